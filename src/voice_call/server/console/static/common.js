// Shared by the console pages: the API calls, the event stream reader and small formatters.
// Every value from a call is put into the page with textContent, never as HTML.

export const csrf = document.querySelector('meta[name="csrf-token"]').content;
export const TERMINAL = new Set([
  "completed", "hangup-user", "hangup-bot", "timeout", "error", "failed", "no-answer", "busy",
  "voicemail",
]);

async function answer(response) {
  if (response.status === 401) {
    window.location.assign("/console");
    throw new Error("logged out");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

export async function getJson(path) {
  return answer(await fetch(path, { headers: { Accept: "application/json" } }));
}

// One control through the command layer; the error is the CLI's and RPC's own sentence.
export async function command(name, params) {
  const response = await fetch(`/console/api/commands/${name}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(params),
  });
  return answer(response);
}

// Follow the event stream (SSE over fetch, so every event type arrives in one callback),
// resuming after the last id whenever the server ends a stream.
export function follow(query, onEvent, onState) {
  let since = query.since;
  const run = async () => {
    for (;;) {
      const params = new URLSearchParams({ ...query.params });
      if (since !== undefined) params.set("since", String(since));
      try {
        const response = await fetch(`/console/api/events?${params}`);
        if (response.status === 401) return answer(response);
        if (!response.ok) throw new Error(`${response.status}`);
        onState("live");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const frame = parseFrame(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
            if (frame.id !== null) since = frame.id;
            if (frame.data !== null) onEvent(JSON.parse(frame.data));
          }
        }
      } catch (err) {
        if (err.message === "logged out") return undefined;
      }
      onState("reconnecting…");
      await new Promise((resolve) => window.setTimeout(resolve, 1000));
    }
  };
  run();
}

function parseFrame(text) {
  const frame = { id: null, data: null };
  for (const line of text.split("\n")) {
    if (line.startsWith("id:")) frame.id = Number(line.slice(3).trim());
    else if (line.startsWith("data:")) frame.data = (frame.data ?? "") + line.slice(5).trim();
  }
  return frame;
}

export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

export function ms(value) {
  if (typeof value !== "number") return "—";
  return value < 10 ? value.toFixed(1) : `${Math.round(value)}`;
}

export function duration(startedAt, endedAt) {
  if (typeof startedAt !== "number") return "—";
  const end = typeof endedAt === "number" ? endedAt : Date.now() / 1000;
  const total = Math.max(0, Math.round(end - startedAt));
  const minutes = Math.floor(total / 60);
  return `${minutes}:${String(total % 60).padStart(2, "0")}`;
}

export function clock(at) {
  return typeof at === "number" ? new Date(at * 1000).toISOString().slice(11, 23) : "";
}

export function stateBadge(node, state) {
  node.textContent = state || "…";
  node.className = `state state-${state || "unknown"}`;
}

export function setupLogout() {
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/console/logout", { method: "POST", headers: { "X-CSRF-Token": csrf } });
    window.location.assign("/console");
  });
}

export function streamIndicator(state) {
  const node = document.getElementById("stream-state");
  node.textContent = state;
  node.classList.toggle("ok", state === "live");
}
