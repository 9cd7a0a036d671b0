"""`turn_latency`: what the service itself adds to a turn's voice-to-voice latency.

A real server on a loopback port (mock provider, native-speech path) answers each caller turn
with a zero-delay fake model (FakeOpenAI: no first-token or per-token wait) or the echo
responder. Per turn we measure, from the moment the final speech webhook is sent:

- end to end: webhook sent → first reply handed to `provider.speak` (what a carrier would see);
- voice-to-voice as recorded on the turn (final speech event received → first reply sent);
- the responder's own time to first token (the OpenAI SDK + the fake's HTTP round trip);
- overhead = recorded voice-to-voice − responder first token: the service's share, the figure
  the targets apply to (p50 ≤ 5 ms, p99 ≤ 20 ms).

Calls are 20 turns long (a new call then starts), so transcripts stay conversation-sized.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

TURNS_PER_CALL = 20
TARGET_P50_MS = 5.0
TARGET_P99_MS = 20.0


def run(smoke: bool) -> list[dict[str, Any]]:
    turns = 30 if smoke else 1000
    rows: list[dict[str, Any]] = []
    for responder in ("openai", "echo"):
        rows += asyncio.run(_measure(responder, turns))
    return rows


async def _measure(responder: str, turns: int) -> list[dict[str, Any]]:
    import httpx

    from voice_call.config import parse_config
    from voice_call.models import CallRecord, Mode, TurnLatency
    from voice_call.runtime import Runtime
    from voice_call.server.app import build_app
    from voice_call.server.serve import start_background
    from voice_call.sim.openai import ChatScript, FakeOpenAI

    fake = FakeOpenAI(
        "sk-bench", chat=ChatScript(reply="Sure. Anything else?", first_token_ms=0, per_token_ms=0)
    )
    await fake.__aenter__()
    raw: dict[str, Any] = {
        "provider": "mock",
        "serve": {"port": 0},
        "maxConcurrentCalls": 100,
        "staleCallReaperSeconds": 0,
        "mock": {"answerDelayMs": 0, "silent": True},
        "responder": {"provider": responder},
    }
    if responder == "openai":
        raw["responder"].update(baseUrl=fake.url, apiKey="sk-bench")
        raw["responseModel"] = "openai/bench"
    with tempfile.TemporaryDirectory() as home:
        runtime = Runtime(parse_config(raw, env={}), Path(home))
        spoke = asyncio.Event()
        first_speak: list[float] = []
        speak = runtime.provider.speak

        async def spy(call: CallRecord, text: str) -> None:
            if not spoke.is_set():
                first_speak.append(time.monotonic())
                spoke.set()
            await speak(call, text)

        runtime.provider.speak = spy  # type: ignore[method-assign]
        recorded = asyncio.Event()
        figures: list[TurnLatency] = []

        def on_turn(_: CallRecord, turn: TurnLatency) -> None:
            figures.append(turn)
            recorded.set()

        runtime.manager.turn_listeners.append(on_turn)
        server = await start_background(runtime, app=build_app(runtime), announce=False)
        end_to_end: list[float] = []
        try:
            async with httpx.AsyncClient(base_url=server.url) as http:
                await http.get("/healthz")  # the bench client's own connection, made once
                call_id = ""
                for turn in range(turns + 1):  # turn 0 warms every path once, not counted
                    if turn % TURNS_PER_CALL == 0:
                        if call_id:
                            await runtime.manager.end(call_id)
                        call_id = await _new_call(runtime, Mode.CONVERSATION)
                    spoke.clear()
                    recorded.clear()
                    first_speak.clear()
                    event = {"type": "call.speech", "callId": call_id, "transcript": f"turn {turn}"}
                    sent = time.monotonic()
                    response = await http.post(runtime.config.serve.path, json={"event": event})
                    response.raise_for_status()
                    await asyncio.wait_for(spoke.wait(), 10)
                    await asyncio.wait_for(recorded.wait(), 10)
                    if turn:
                        end_to_end.append((first_speak[0] - sent) * 1000)
        finally:
            await server.stop()
            await fake.__aexit__(None, None, None)
    replies = figures[1:]
    v2v = [t.voice_to_voice_ms or 0.0 for t in replies]
    first_token = [t.responder_first_token_ms or 0.0 for t in replies]
    overhead = [a - b for a, b in zip(v2v, first_token, strict=True)]
    name = "openai (FakeOpenAI, 0 ms)" if responder == "openai" else "echo"
    rows = [
        _row(f"{name}: webhook sent → first speak", end_to_end),
        _row(f"{name}: recorded voice-to-voice", v2v),
    ]
    if responder == "openai":
        rows.append(_row(f"{name}: responder first token", first_token))
    rows.append(_row(f"{name}: overhead (v2v − first token)", overhead, target=True))
    return rows


async def _new_call(runtime: Any, mode: Any) -> str:
    from voice_call.models import CallState

    call = await runtime.manager.initiate(to="+15555550123", message="Hello", mode=mode)
    while True:  # answered at once; greeted and listening a few loop turns later
        record = await runtime.store.get(call.call_id)
        if record is not None and record.state == CallState.LISTENING:
            return str(call.call_id)
        await asyncio.sleep(0.001)


def _percentile(ordered: list[float], q: float) -> float:
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _row(what: str, samples: list[float], target: bool = False) -> dict[str, Any]:
    ordered = sorted(samples)
    p50, p99 = _percentile(ordered, 50), _percentile(ordered, 99)
    verdict = "-"
    if target:
        ok = p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS
        verdict = f"{'met' if ok else 'MISSED'} (p50 ≤ {TARGET_P50_MS:g}, p99 ≤ {TARGET_P99_MS:g})"
    return {
        "what": what,
        "turns": len(samples),
        "p50 ms": round(p50, 2),
        "p99 ms": round(p99, 2),
        "mean ms": round(statistics.fmean(ordered), 2),
        "max ms": round(ordered[-1], 2),
        "target": verdict,
    }
