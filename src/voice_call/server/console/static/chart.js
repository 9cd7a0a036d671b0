// The turn latency chart: one group of bars per turn, one bar per component, drawn as plain
// SVG (a charting library would be larger than this file, and CSP-safe colours come from
// classes in console.css).
import { ms } from "./common.js";

const SVG = "http://www.w3.org/2000/svg";
export const COMPONENTS = [
  ["endpointingMs", "endpointing"],
  ["responderFirstTokenMs", "first token"],
  ["ttsFirstByteMs", "TTS first byte"],
  ["voiceToVoiceMs", "voice-to-voice"],
];
const W = 640;
const H = 220;
const PAD = { left: 48, right: 8, top: 28, bottom: 24 };

function node(tag, attrs, text) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  return Math.ceil(value / step) * step;
}

export function drawLatency(svg, turns) {
  const values = turns.flatMap((t) => COMPONENTS.map(([key]) => t[key]))
    .filter((v) => typeof v === "number");
  const top = niceMax(Math.max(0, ...values));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const parts = [];
  COMPONENTS.forEach(([, label], i) => {
    parts.push(node("rect", { x: PAD.left + i * 140, y: 6, width: 10, height: 10,
      class: `bar c${i}` }));
    parts.push(node("text", { x: PAD.left + i * 140 + 14, y: 15, class: "legend" }, label));
  });
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const y = PAD.top + plotH * (1 - f);
    parts.push(node("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "grid" }));
    parts.push(node("text", { x: PAD.left - 4, y: y + 4, class: "axis end" },
      ms(top * f)));
  }
  const groupW = turns.length ? plotW / turns.length : plotW;
  const barW = Math.max(2, Math.min(24, (groupW - 8) / COMPONENTS.length));
  turns.forEach((turn, t) => {
    const x0 = PAD.left + t * groupW + (groupW - barW * COMPONENTS.length) / 2;
    COMPONENTS.forEach(([key, label], i) => {
      const v = turn[key];
      if (typeof v !== "number") return;
      const h = (v / top) * plotH;
      const bar = node("rect", { x: x0 + i * barW, y: PAD.top + plotH - h, width: barW - 1,
        height: Math.max(h, 1), class: `bar c${i}` });
      bar.append(node("title", {}, `turn ${turn.turn}: ${label} ${Math.round(v)} ms`));
      parts.push(bar);
    });
    parts.push(node("text", { x: PAD.left + t * groupW + groupW / 2, y: H - 6,
      class: "axis middle" }, `${turn.turn}`));
  });
  svg.replaceChildren(...parts);
}
