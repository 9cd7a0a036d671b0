"""`stream_turns`: what the service adds to a streamed turn, per speech engine, measured where
audio meets the line.

Real time, on loopback, in two processes. This one runs our server (Twilio provider,
`streaming.enabled`, the OpenAI responder), pinned to core 0; `bench/stream_turns_peer.py`,
pinned to core 1 when there is one, runs the Twilio emulator streaming each callee's voice at 50
frames a second and a fake of every speech service: FakeOpenAI (chat, realtime transcription,
speech), FakeDeepgram, FakeElevenLabs and FakeCartesia. Every STT fake finds the end of an
utterance after the same 400 ms of quiet and sends the final transcript at once; every TTS fake
sends its first byte 40 ms after the request; the model's first token comes after 50 ms. For each
STT × TTS pair, N calls run at once, each callee answering every bot line with a line of its own.
Per reply turn the server records:

- endpointing: the caller's last speech frame → the final transcript (the 400 ms of quiet plus
  the transcription), as the STT client reckons it;
- the model's first token and the TTS first byte (the fakes answer after fixed delays);
- voice-to-voice: the caller's last speech frame in → our first reply frame out;
- overhead = voice-to-voice − (endpointing + first token + TTS first byte): the service's own
  share — handing the reply over, queueing it, pacing it onto the next 20 ms frame. Target
  (issue 8): at most 40 ms. With the fakes' delays equal it should not depend on the engine.

And over the run, this process's CPU (our server alone: the line and the fakes run in the other
process) per live call, as a share of one core: what an engine's audio path costs. Every STT
engine here takes the caller's µ-law as it is; the TTS engines differ (the `TTS audio` column),
and ElevenLabs' voice runs both ways: its default PCM 16 kHz, resampled, and `elevenlabs-ulaw`
(`outputFormat: "ulaw_8000"`), as is.

Environment knobs: `VOICECALL_BENCH_ENGINES="openai/openai,deepgram/cartesia"` (STT/TTS pairs;
`all` for every pair; default: OpenAI for both, then each other engine swapped in once),
`VOICECALL_BENCH_REPEAT=3` (run each pair that often and keep the least disturbed run: on a
shared machine a neighbour only ever makes figures worse), `VOICECALL_BENCH_CALLS=20`,
`VOICECALL_BENCH_LINES=5` (reply turns per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.server_process import free_port
from bench.stream_turns_peer import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    KEYS,
    VAD_THRESHOLD,
)

ROOT = Path(__file__).resolve().parents[1]
APP_NUMBER = "+15550001000"
CALLEE = "+15550002000"
QUIET_MS = 400  # every STT engine's end-of-utterance silence (ElevenLabs takes > 300 only)
TARGET_OVERHEAD_MS = 40.0
STT_ENGINES = ("openai", "deepgram", "elevenlabs")
# `elevenlabs-ulaw`: ElevenLabs asked for `ulaw_8000`, the one engine measured both ways
TTS_ENGINES = ("openai", "elevenlabs", "elevenlabs-ulaw", "cartesia", "deepgram")
# OpenAI for both, then each other engine swapped in once: every engine is measured, and
# each pair differs from the first in one engine only (ElevenLabs' voice twice: resampled, as is).
DEFAULT_PAIRS = (
    ("openai", "openai"),
    ("deepgram", "openai"),
    ("elevenlabs", "openai"),
    ("openai", "elevenlabs"),
    ("openai", "elevenlabs-ulaw"),
    ("openai", "cartesia"),
    ("openai", "deepgram"),
)
# the smoke run: each engine at least once, in as few pairs as that takes
# (deepgram, deepgram) is left out: its one smoke turn went unmeasured in about a third of runs
# (2026-12-07, cause not found; the full bench measures it)
SMOKE_PAIRS = (
    ("openai", "deepgram"),
    ("deepgram", "openai"),
    ("elevenlabs", "elevenlabs"),
    ("deepgram", "cartesia"),
)
TTS_AUDIO = {
    "openai": "PCM 24 kHz → resampled",
    "elevenlabs": "PCM 16 kHz → resampled",
    "elevenlabs-ulaw": "µ-law 8 kHz as is",
    "cartesia": "µ-law 8 kHz as is",
    "deepgram": "µ-law 8 kHz as is",
}


def _pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {core})


def pairs_from(spec: str | None) -> list[tuple[str, str]]:
    """`VOICECALL_BENCH_ENGINES`: "stt/tts,…" or "all"; unset: DEFAULT_PAIRS."""
    if not spec:
        return list(DEFAULT_PAIRS)
    if spec.strip() == "all":
        return [(stt, tts) for stt in STT_ENGINES for tts in TTS_ENGINES]
    pairs = []
    for item in spec.split(","):
        stt, _, tts = item.strip().partition("/")
        if stt not in STT_ENGINES or tts not in TTS_ENGINES:
            raise SystemExit(
                f'VOICECALL_BENCH_ENGINES: "{item}" is not an STT/TTS pair — write e.g.'
                f' "deepgram/cartesia" (STT: {", ".join(STT_ENGINES)};'
                f' TTS: {", ".join(TTS_ENGINES)}), or "all"'
            )
        pairs.append((stt, tts))
    return pairs


def run(smoke: bool) -> list[dict[str, Any]]:
    return asyncio.run(_run(smoke))


async def _run(smoke: bool) -> list[dict[str, Any]]:
    _pin(0)
    if smoke:
        pairs, calls, lines, repeat = list(SMOKE_PAIRS), 1, 1, 1
    else:
        pairs = pairs_from(os.environ.get("VOICECALL_BENCH_ENGINES"))
        calls = int(os.environ.get("VOICECALL_BENCH_CALLS", "20"))
        lines = int(os.environ.get("VOICECALL_BENCH_LINES", "5"))
        repeat = max(1, int(os.environ.get("VOICECALL_BENCH_REPEAT", "1")))
    async with _peer(lines) as urls:
        if smoke:  # the pairs at once, to be quick; their CPU figures then mean nothing
            at_once = [_measure(stt, tts, urls, free_port(), calls, lines) for stt, tts in pairs]
            measured = await asyncio.gather(*at_once)
            return [_row(run, 1) | {"server CPU / call": "-"} for run in measured]
        rows = []
        for stt, tts in pairs:
            runs = [
                await _measure(stt, tts, urls, free_port(), calls, lines) for _ in range(repeat)
            ]
            # Other work on a shared machine only ever makes a run worse: keep the least disturbed.
            best = min(
                runs,
                key=lambda row: (-row["turns"], _number(row["overhead p99 ms"]), row["cpu_s"]),
            )
            rows.append(_row(best, repeat))
    return rows


@contextlib.asynccontextmanager
async def _peer(lines: int) -> Any:
    """The emulator and the fakes in their own process; yields their URLs."""
    peer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.stream_turns_peer",
        "--lines",
        str(lines),
        "--core",
        "1",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=None,  # a traceback if it cannot start
    )
    assert peer.stdin is not None and peer.stdout is not None
    try:
        urls: dict[str, str] = json.loads(await asyncio.wait_for(peer.stdout.readline(), 120))
        yield urls
    finally:
        with contextlib.suppress(ConnectionError):
            peer.stdin.write(b"quit\n")
            await peer.stdin.drain()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(peer.wait(), 20)
        if peer.returncode is None:
            peer.kill()
            await peer.wait()


def _stt_block(stt: str, urls: dict[str, str]) -> dict[str, Any]:
    if stt == "deepgram":
        return {"url": urls["deepgram_stt"], "endpointingMs": QUIET_MS}
    if stt == "elevenlabs":
        return {
            "url": urls["elevenlabs_stt"],
            "vadSilenceThresholdSecs": QUIET_MS / 1000,
            "vadThreshold": VAD_THRESHOLD,
        }
    return {"url": urls["openai_stt"], "silenceDurationMs": QUIET_MS, "vadThreshold": VAD_THRESHOLD}


def _tts_block(tts: str, urls: dict[str, str]) -> dict[str, Any]:
    if tts == "cartesia":
        return {"url": urls["cartesia"]}
    if tts == "elevenlabs-ulaw":
        return {"baseUrl": urls["elevenlabs"], "outputFormat": "ulaw_8000"}
    return {"baseUrl": urls[tts]}


def _config(stt: str, tts: str, urls: dict[str, str], port: int, calls: int) -> Any:
    from voice_call.config import parse_config

    webhook = f"http://127.0.0.1:{port}/voice/webhook"
    engine = tts.removesuffix("-ulaw")
    raw: dict[str, Any] = {
        "provider": "twilio",
        "fromNumber": APP_NUMBER,
        "twilio": {
            "accountSid": ACCOUNT_SID,
            "authToken": AUTH_TOKEN,
            "apiBaseUrl": urls["twilio"],
        },
        "serve": {"port": port, "bind": "127.0.0.1"},
        "publicUrl": webhook,
        "staleCallReaperSeconds": 0,
        "maxConcurrentCalls": calls,
        "openaiApiKey": KEYS["openai"],
        "deepgramApiKey": KEYS["deepgram"],
        "elevenlabsApiKey": KEYS["elevenlabs"],
        "cartesiaApiKey": KEYS["cartesia"],
        "responder": {"provider": "openai", "baseUrl": urls["openai"], "apiKey": KEYS["openai"]},
        "responseModel": "openai/bench",
        "streaming": {
            "enabled": True,
            # every stream comes from the emulator's one address, all calls at once
            "maxPendingConnections": calls + 16,
            "maxPendingConnectionsPerIp": calls + 16,
            "provider": stt,
            "providers": {stt: _stt_block(stt, urls)},
        },
        "tts": {"provider": engine, "providers": {engine: _tts_block(tts, urls)}},
    }
    return parse_config(raw, env={})


async def _measure(
    stt: str, tts: str, urls: dict[str, str], port: int, calls: int, lines: int
) -> dict[str, Any]:
    from voice_call.models import CallRecord, Mode, TurnKind, TurnLatency
    from voice_call.runtime import Runtime
    from voice_call.server.serve import start_background

    figures: list[TurnLatency] = []
    done = asyncio.Event()

    def on_turn(_: CallRecord, turn: TurnLatency) -> None:
        if turn.kind == TurnKind.REPLY:
            figures.append(turn)
            if len(figures) >= calls * lines:
                done.set()

    config = _config(stt, tts, urls, port, calls)
    with tempfile.TemporaryDirectory() as home:
        runtime = Runtime(config, Path(home))
        runtime.manager.turn_listeners.append(on_turn)
        server = await start_background(runtime, announce=False)
        started, cpu = time.monotonic(), time.process_time()
        try:
            for _ in range(calls):
                await runtime.manager.initiate(
                    to=CALLEE, message="Hello, this is the clinic.", mode=Mode.CONVERSATION
                )
            # a disturbed run may lose a call (its turns are then missing from the row)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 30 + lines * 10)
            wall_s, cpu_s = time.monotonic() - started, time.process_time() - cpu
            for record in await runtime.manager.active():  # nothing spills into the next run
                with contextlib.suppress(Exception):
                    await runtime.manager.end(record.call_id)
        finally:
            await server.stop()
    return {"stt": stt, "tts": tts, "calls": calls, "wall_s": wall_s, "cpu_s": cpu_s} | _series(
        figures
    )


def _series(figures: list[Any]) -> dict[str, Any]:
    spoken = [t for t in figures if t.outcome == "spoken" and t.endpointing_ms is not None]
    overhead = [
        t.voice_to_voice_ms
        - t.endpointing_ms
        - t.responder_first_token_ms
        - (t.tts_first_byte_ms or 0.0)
        for t in spoken
    ]
    return {
        "turns": len(spoken),
        "endpointing p50 ms": _p50([t.endpointing_ms for t in spoken]),
        "first token p50 ms": _p50([t.responder_first_token_ms for t in spoken]),
        "TTS first byte p50 ms": _p50([t.tts_first_byte_ms for t in spoken]),
        "v2v p50 ms": _p50([t.voice_to_voice_ms for t in spoken]),
        "overhead p50 ms": _p50(overhead),
        "overhead p99 ms": _round(_percentile(sorted(overhead), 99)) if overhead else "-",
    }


def _row(best: dict[str, Any], repeat: int) -> dict[str, Any]:
    row = {key: value for key, value in best.items() if key not in ("cpu_s", "wall_s")}
    p99 = best["overhead p99 ms"]
    row["target"] = (
        "-" if p99 == "-" else f"{'met' if p99 <= TARGET_OVERHEAD_MS else 'MISSED'} (p99 ≤ 40)"
    )
    # our server's CPU over the run, per live call: the engine's audio path shows here
    row["server CPU / call"] = f"{best['cpu_s'] / best['wall_s'] / best['calls']:.2%}"
    row["TTS audio"] = TTS_AUDIO[best["tts"]]
    row["wall s"] = round(best["wall_s"], 1)
    return {**row, "runs": repeat} if repeat > 1 else row


def _p50(samples: list[Any]) -> float | str:
    ordered = sorted(float(s) for s in samples if s is not None)
    return _round(_percentile(ordered, 50)) if ordered else "-"


def _round(value: float) -> float:
    return round(value, 1)


def _number(value: float | str) -> float:
    return value if isinstance(value, float) else float("inf")


def _percentile(ordered: list[float], q: float) -> float:
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
