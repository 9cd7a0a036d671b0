// The calls page: the live calls table (kept current from the event stream), placing a
// call, and the history search.
import {
  command, duration, el, follow, getJson, ms, setupLogout, stateBadge, streamIndicator,
  TERMINAL,
} from "./common.js";

const rows = new Map(); // callId → { call, tr }
const pending = new Map(); // callId → whether events arrived during the fetch
const tbody = document.querySelector("#calls tbody");

function link(callId) {
  const a = el("a", callId.slice(0, 8));
  a.href = `/console/calls/${encodeURIComponent(callId)}`;
  a.title = callId;
  return a;
}

const COLUMNS = ["call", "state", "direction", "from", "to", "duration", "mode", "carrier", "v2v"];

// Cells are made once and then only their text changes, so a link stays the same node
// (a click never lands on one that was just replaced).
function newRow(callId) {
  const tr = el("tr");
  tr.dataset.callId = callId;
  for (const name of COLUMNS) tr.append(el("td", null, `col-${name}`));
  tr.querySelector(".col-call").append(link(callId));
  tr.querySelector(".col-state").append(el("span"));
  tbody.prepend(tr);
  return tr;
}

function render(call) {
  let entry = rows.get(call.callId);
  if (!entry) {
    entry = { call, tr: newRow(call.callId) };
    rows.set(call.callId, entry);
  }
  entry.call = { ...entry.call, ...call };
  const c = entry.call;
  const cell = (name) => entry.tr.querySelector(`.col-${name}`);
  stateBadge(cell("state").firstChild, c.state);
  for (const [name, value] of [["direction", c.direction], ["from", c.from], ["to", c.to],
    ["duration", duration(c.answeredAt ?? c.startedAt, c.endedAt)], ["mode", c.mode],
    ["carrier", c.provider],
    ["v2v", c.lastVoiceToVoiceMs == null ? "—" : `${ms(c.lastVoiceToVoiceMs)} ms`]]) {
    cell(name).textContent = value ?? "";
  }
  entry.tr.classList.toggle("ended", TERMINAL.has(c.state));
  document.getElementById("no-calls").hidden = rows.size > 0;
}

// A call's row from the API; events that arrive meanwhile ask for a fresh copy afterwards
// (the copy in flight may predate them).
async function fetchRow(callId) {
  if (pending.has(callId)) {
    pending.set(callId, true);
    return;
  }
  pending.set(callId, false);
  try {
    const { row } = await getJson(`/console/api/calls/${encodeURIComponent(callId)}`);
    render(row);
  } finally {
    const stale = pending.get(callId);
    pending.delete(callId);
    if (stale) fetchRow(callId);
  }
}

function onEvent(event) {
  const entry = rows.get(event.callId);
  if (!entry || pending.has(event.callId)) {
    fetchRow(event.callId);
    return;
  }
  const update = {};
  if (event.state) update.state = event.state;
  if (event.type === "call.answered") update.answeredAt = event.at;
  if (event.type.startsWith("turn.") && typeof event.data.voiceToVoiceMs === "number") {
    update.lastVoiceToVoiceMs = event.data.voiceToVoiceMs;
  }
  if (TERMINAL.has(event.state) && entry.call.endedAt == null) update.endedAt = event.at;
  render({ ...update, callId: event.callId });
}

async function placeCall(form) {
  const error = document.getElementById("place-error");
  error.textContent = "";
  const data = new FormData(form);
  const params = { message: data.get("message") };
  if (data.get("to")) params.to = data.get("to");
  if (data.get("mode")) params.mode = data.get("mode");
  try {
    const result = await command("initiate", params);
    form.reset();
    fetchRow(result.callId);
  } catch (err) {
    error.textContent = err.message;
  }
}

async function searchHistory(form) {
  const error = document.getElementById("history-error");
  error.textContent = "";
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) if (value) params.set(key, value);
  try {
    const { calls } = await getJson(`/console/api/history?${params}`);
    const body = document.querySelector("#history tbody");
    body.replaceChildren(...calls.map((c) => {
      const tr = el("tr");
      const started = new Date(c.startedAt * 1000).toISOString().slice(0, 19).replace("T", " ");
      const badge = el("span");
      stateBadge(badge, c.state);
      for (const v of [link(c.callId), badge, c.direction, c.from, c.to, started,
        duration(c.answeredAt ?? c.startedAt, c.endedAt), c.mode, c.provider]) {
        const td = el("td", v instanceof Node ? null : v);
        if (v instanceof Node) td.append(v);
        tr.append(td);
      }
      return tr;
    }));
  } catch (err) {
    error.textContent = err.message;
  }
}

async function start() {
  setupLogout();
  document.getElementById("place").addEventListener("submit", (e) => {
    e.preventDefault();
    placeCall(e.target);
  });
  document.getElementById("history-search").addEventListener("submit", (e) => {
    e.preventDefault();
    searchHistory(e.target);
  });
  const { seq, calls } = await getJson("/console/api/calls");
  calls.forEach(render);
  document.getElementById("no-calls").hidden = rows.size > 0;
  follow({ since: seq, params: {} }, onEvent, streamIndicator);
  window.setInterval(() => {
    for (const { call, tr } of rows.values()) {
      if (TERMINAL.has(call.state)) continue;
      tr.querySelector("td.col-duration").textContent = duration(
        call.answeredAt ?? call.startedAt, call.endedAt);
    }
  }, 1000);
  searchHistory(document.getElementById("history-search"));
}

start();
