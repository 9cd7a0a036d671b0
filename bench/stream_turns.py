"""`stream_turns`: what the service adds to a streamed turn, measured where audio meets the line.

Real time, all on loopback in one process: our server (Twilio provider, `streaming.enabled`,
the OpenAI responder), the Twilio emulator streaming each callee's voice at 50 frames a second,
and FakeOpenAI for speech-to-text (realtime transcription with its energy VAD, 300 ms of quiet
ends an utterance), the model (chat) and text-to-speech. N calls run at once, each callee
answering every bot line with a line of its own. Per reply turn the server records:

- endpointing: the caller's last speech frame → the final transcript (the VAD's 300 ms wait
  plus the transcription);
- the model's first token and the TTS first byte (the fakes answer after fixed delays);
- voice-to-voice: the caller's last speech frame in → our first reply frame out;
- overhead = voice-to-voice − (endpointing + first token + TTS first byte): the service's own
  share — handing the reply over, queueing it, pacing it onto the next 20 ms frame. Target
  (issue 8): at most 40 ms.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.server_process import free_port

ACCOUNT_SID = "AC" + "b3" * 16
AUTH_TOKEN = "stream-turns-bench-token"
KEY = "sk-bench"
APP_NUMBER = "+15550001000"
CALLEE = "+15550002000"
LINE = "Tuesday at three works for me."
FIRST_TOKEN_MS = 50
TTS_FIRST_BYTE_MS = 40
TARGET_OVERHEAD_MS = 40.0


def run(smoke: bool) -> list[dict[str, Any]]:
    calls, lines = (2, 2) if smoke else (20, 5)
    return asyncio.run(_measure(calls, lines))


def _config(emu_url: str, fake_url: str, realtime_url: str, port: int, calls: int) -> Any:
    from voice_call.config import parse_config

    webhook = f"http://127.0.0.1:{port}/voice/webhook"
    raw: dict[str, Any] = {
        "provider": "twilio",
        "fromNumber": APP_NUMBER,
        "twilio": {"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "apiBaseUrl": emu_url},
        "serve": {"port": port, "bind": "127.0.0.1"},
        "publicUrl": webhook,
        "staleCallReaperSeconds": 0,
        "maxConcurrentCalls": calls,
        "openaiApiKey": KEY,
        "responder": {"provider": "openai", "baseUrl": fake_url, "apiKey": KEY},
        "responseModel": "openai/bench",
        "streaming": {
            "enabled": True,
            "providers": {
                "openai": {"url": realtime_url, "silenceDurationMs": 300, "vadThreshold": 0.3}
            },
        },
        "tts": {"provider": "openai", "providers": {"openai": {"baseUrl": fake_url}}},
    }
    return parse_config(raw, env={})


async def _measure(calls: int, lines: int) -> list[dict[str, Any]]:
    from voice_call.models import CallRecord, Mode, TurnKind, TurnLatency
    from voice_call.runtime import Runtime
    from voice_call.server.serve import start_background
    from voice_call.sim.callee import CalleeScript
    from voice_call.sim.openai import ChatScript, FakeOpenAI, SpeechScript, TranscriptionScript
    from voice_call.sim.twilio import TwilioEmulator
    from voice_call.sim.voice import synthetic_speech

    port = free_port()
    webhook = f"http://127.0.0.1:{port}/voice/webhook"
    # Tokens all at once: the time to the end of the first sentence is the model's, not ours.
    chat = ChatScript(reply="Sure, that works.", first_token_ms=FIRST_TOKEN_MS, per_token_ms=0)
    speech = SpeechScript(first_byte_ms=TTS_FIRST_BYTE_MS, per_chunk_ms=20, chunk_bytes=4800)
    transcription = TranscriptionScript(source=lambda turn: LINE, first_delta_ms=0, per_word_ms=0)
    callee = CalleeScript(answer_delay_ms=200, replies=(LINE,) * lines, reply_delay_ms=300)
    figures: list[TurnLatency] = []
    done = asyncio.Event()

    def on_turn(_: CallRecord, turn: TurnLatency) -> None:
        if turn.kind == TurnKind.REPLY:
            figures.append(turn)
            if len(figures) >= calls * lines:
                done.set()

    async with (
        FakeOpenAI(KEY, chat=chat, speech=speech, transcription=transcription) as fake,
        TwilioEmulator(
            ACCOUNT_SID,
            AUTH_TOKEN,
            script=callee,
            voice_url=webhook,
            status_callback=webhook,
            speech=synthetic_speech,
        ) as emu,
    ):
        config = _config(emu.url, fake.url, fake.realtime_url, port, calls)
        with tempfile.TemporaryDirectory() as home:
            runtime = Runtime(config, Path(home))
            runtime.manager.turn_listeners.append(on_turn)
            server = await start_background(runtime, announce=False)
            started = time.monotonic()
            try:
                for _ in range(calls):
                    await runtime.manager.initiate(
                        to=CALLEE, message="Hello, this is the clinic.", mode=Mode.CONVERSATION
                    )
                await asyncio.wait_for(done.wait(), 30 + lines * 10)
            finally:
                await server.stop()
    return _rows(figures, calls, time.monotonic() - started)


def _rows(figures: list[Any], calls: int, elapsed_s: float) -> list[dict[str, Any]]:
    spoken = [t for t in figures if t.outcome == "spoken" and t.endpointing_ms is not None]
    series = {
        "endpointing (last speech frame → final)": [t.endpointing_ms for t in spoken],
        "model first token (fake: 50 ms)": [t.responder_first_token_ms for t in spoken],
        "TTS first byte (fake: 40 ms)": [t.tts_first_byte_ms for t in spoken],
        "voice-to-voice (last frame in → first frame out)": [t.voice_to_voice_ms for t in spoken],
        "overhead (v2v − the three above)": [
            t.voice_to_voice_ms
            - t.endpointing_ms
            - t.responder_first_token_ms
            - (t.tts_first_byte_ms or 0.0)
            for t in spoken
        ],
    }
    rows = []
    for what, samples in series.items():
        ordered = sorted(float(s) for s in samples if s is not None)
        target = "-"
        if what.startswith("overhead") and ordered:
            ok = _percentile(ordered, 99) <= TARGET_OVERHEAD_MS
            target = f"{'met' if ok else 'MISSED'} (p99 ≤ {TARGET_OVERHEAD_MS:g})"
        rows.append(
            {
                "what": what,
                "calls": calls,
                "turns": len(ordered),
                "p50 ms": round(_percentile(ordered, 50), 1) if ordered else "-",
                "p99 ms": round(_percentile(ordered, 99), 1) if ordered else "-",
                "mean ms": round(statistics.fmean(ordered), 1) if ordered else "-",
                "max ms": round(ordered[-1], 1) if ordered else "-",
                "target": target,
                "wall s": round(elapsed_s, 1),
            }
        )
    return rows


def _percentile(ordered: list[float], q: float) -> float:
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
