// One call's page: transcript bubbles, turn latency (table and chart), the event log, details
// and the controls, all replayed from the call's event log and then followed live.
import {
  clock, command, duration, el, follow, getJson, ms, setupLogout, stateBadge, streamIndicator,
  TERMINAL,
} from "./common.js";
import { drawLatency } from "./chart.js";
import { wireListen } from "./listen.js";

const callId = document.querySelector('meta[name="call-id"]').content;
const transcript = document.getElementById("transcript");
const turns = [];
let call = {};
let partial = null; // the caller's bubble still being transcribed
let lastBot = null;

function bubble(speaker, text, at, extra) {
  const node = el("div", null, `bubble ${speaker}${extra ? ` ${extra}` : ""}`);
  node.append(el("span", speaker === "bot" ? "bot" : "caller", "who"), el("p", text));
  node.append(el("time", clock(at)));
  transcript.append(node);
  node.scrollIntoView({ block: "nearest" });
  return node;
}

function heard(event) {
  const text = event.data.transcript ?? event.data.text ?? "";
  const final = event.data.isFinal !== false;
  if (partial) {
    partial.querySelector("p").textContent = text;
    if (final) {
      partial.classList.remove("partial");
      partial = null;
    }
    return;
  }
  const node = bubble("user", text, event.at, final ? "" : "partial");
  if (!final) partial = node;
}

function markBargeIn(node) {
  if (!node || node.classList.contains("barge-in")) return;
  node.classList.add("barge-in");
  node.append(el("span", "interrupted by the caller", "mark"));
}

function onEvent(event) {
  logRow(event);
  const data = event.data || {};
  if (event.type === "call.speech") heard(event);
  else if (event.type === "bot.spoke") lastBot = bubble("bot", data.text ?? "", event.at);
  else if (event.type === "call.replied") {
    lastBot = bubble("bot", data.text ?? "", event.at);
    if (data.isFinal === false) markBargeIn(lastBot);
  } else if (event.type === "turn.replied" || event.type === "turn.completed") {
    turns.push(data);
    renderLatency();
    if (data.outcome === "interrupted") markBargeIn(lastBot);
  }
  if (event.state) {
    call.state = event.state;
    stateBadge(document.getElementById("state"), event.state);
    if (event.type === "call.answered") call.answeredAt = event.at;
    if (TERMINAL.has(event.state)) ended();
  }
}

function logRow(event) {
  const tr = el("tr");
  const data = event.data && Object.keys(event.data).length ? JSON.stringify(event.data) : "";
  for (const v of [event.seq, clock(event.at), event.type, event.state ?? "", data]) {
    tr.append(el("td", v));
  }
  document.querySelector("#events tbody").append(tr);
}

function renderLatency() {
  const body = document.querySelector("#latency tbody");
  body.replaceChildren(...turns.map((t) => {
    const tr = el("tr");
    for (const v of [t.turn, t.kind, ms(t.endpointingMs), ms(t.responderFirstTokenMs),
      ms(t.ttsFirstByteMs), ms(t.voiceToVoiceMs), ms(t.totalMs), t.outcome ?? ""]) {
      tr.append(el("td", v));
    }
    return tr;
  }));
  drawLatency(document.getElementById("latency-chart"), turns);
}

async function ended() {
  document.getElementById("controls").classList.add("ended");
  for (const control of document.querySelectorAll("#controls button, #controls input")) {
    control.disabled = true;
  }
  await loadRecord();
}

function showDetails(metadata) {
  const details = document.getElementById("details");
  const shown = Object.entries(metadata || {}).filter(([key]) =>
    /amd|machine|transfer|recording|^error$/i.test(key));
  details.replaceChildren(...shown.flatMap(([key, value]) => [
    el("dt", key), el("dd", typeof value === "string" ? value : JSON.stringify(value)),
  ]));
}

async function loadRecord() {
  const { call: record } = await getJson(`/console/api/calls/${encodeURIComponent(callId)}`);
  call = { ...call, ...record };
  for (const [id, key] of [["direction", "direction"], ["from", "from"], ["to", "to"],
    ["mode", "mode"], ["carrier", "provider"]]) {
    document.getElementById(id).textContent = record[key] ?? "";
  }
  document.getElementById("started").textContent =
    new Date(record.startedAt * 1000).toISOString().slice(0, 19).replace("T", " ") + " UTC";
  document.getElementById("end-reason").textContent = record.endReason ?? "—";
  stateBadge(document.getElementById("state"), record.state);
  showDetails(record.metadata);
  tick();
}

function tick() {
  document.getElementById("duration").textContent =
    duration(call.answeredAt ?? call.startedAt, call.endedAt);
}

async function control(name, params) {
  const error = document.getElementById("control-error");
  const note = document.getElementById("control-note");
  error.textContent = "";
  note.textContent = name === "continue" ? "waiting for the caller's reply…" : "";
  try {
    const result = await command(name, { callId, ...params });
    note.textContent = name === "continue" ? `caller: ${result.transcript}` : "";
    return true;
  } catch (err) {
    note.textContent = "";
    error.textContent = err.message;
    return false;
  }
}

function wireControls() {
  document.getElementById("say").addEventListener("submit", async (e) => {
    e.preventDefault();
    const action = e.submitter?.value === "continue" ? "continue" : "speak";
    const input = e.target.elements.message;
    if (await control(action, { message: input.value })) input.value = "";
  });
  document.getElementById("dtmf").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = e.target.elements.digits;
    if (await control("dtmf", { digits: input.value })) input.value = "";
  });
  document.getElementById("end-call").addEventListener("click", () => control("end", {}));
  wireListen(callId, document.getElementById("listen"), document.getElementById("listen-note"));
}

async function start() {
  setupLogout();
  wireControls();
  try {
    await loadRecord();
  } catch (err) {
    document.getElementById("control-error").textContent = err.message;
    return;
  }
  follow({ since: 0, params: { callId } }, onEvent, streamIndicator);
  window.setInterval(() => { if (!TERMINAL.has(call.state)) tick(); }, 1000);
}

start();
