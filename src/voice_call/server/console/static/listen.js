// Live listen-in: the call's audio, both ways mixed, µ-law 8 kHz from
// POST /console/api/calls/{id}/listen, decoded here and played through Web Audio.
// Starts only on an explicit click (browsers also require one to play sound); "Stop" or
// leaving the page ends it, and the server stops tapping the call.
import { csrf } from "./common.js";

const RATE = 8000;
const LEAD_S = 0.15; // play this far behind the network, to ride out its jitter

// G.711 µ-law → linear, as the server's codec (audio/g711.py) does it
const DECODE = new Float32Array(256);
for (let i = 0; i < 256; i++) {
  const u = ~i & 0xff;
  const t = (((u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
  DECODE[i] = ((u & 0x80) ? 0x84 - t : t - 0x84) / 32768;
}

export function decodeUlaw(bytes) {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = DECODE[bytes[i]];
  return out;
}

export function wireListen(callId, button, note) {
  let running = null;

  async function start() {
    const abort = new AbortController();
    const context = new AudioContext({ sampleRate: RATE });
    running = { abort, context };
    button.textContent = "Stop listening";
    note.textContent = "";
    let at = 0;
    let heard = 0;
    try {
      const response = await fetch(`/console/api/calls/${encodeURIComponent(callId)}/listen`, {
        method: "POST",
        headers: { "X-CSRF-Token": csrf },
        signal: abort.signal,
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error(body.error || `listen-in refused (${response.status})`);
      }
      note.textContent = "Listening (caller and bot mixed)…";
      const reader = response.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const samples = decodeUlaw(value);
        const buffer = context.createBuffer(1, samples.length, RATE);
        buffer.copyToChannel(samples, 0);
        const source = context.createBufferSource();
        source.buffer = buffer;
        source.connect(context.destination);
        at = Math.max(at, context.currentTime + LEAD_S);
        source.start(at);
        at += buffer.duration;
        heard += samples.length;
        button.dataset.heardMs = String(Math.round(heard / 8)); // how much came, for a look
      }
      note.textContent = "The call's audio stream has ended.";
    } catch (err) {
      if (err.name !== "AbortError") note.textContent = err.message;
    } finally {
      stop();
    }
  }

  function stop() {
    if (running === null) return;
    running.abort.abort();
    running.context.close();
    running = null;
    button.textContent = "Listen in";
  }

  button.addEventListener("click", () => (running === null ? start() : stop()));
  window.addEventListener("pagehide", stop);
}
