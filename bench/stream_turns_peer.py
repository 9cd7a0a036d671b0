"""The far side of the `stream_turns` benchmark: the phone line and every speech service.

Run by `bench/stream_turns.py`, not by hand (outbound calls name our webhook themselves). One
process, pinned to its own core, so the server's CPU (measured in the benchmark's process)
holds only our work: the Twilio emulator (each callee says `--lines` lines, 50 frames a second),
FakeOpenAI (chat, realtime transcription, speech), FakeDeepgram (listen, speak), FakeElevenLabs
(realtime STT, speech) and FakeCartesia. Every fake answers after the same delays: the final
transcript `FINAL_MS` after the caller's quiet ends, the first audio byte `FIRST_BYTE_MS` after
a request, then 100 ms of audio every 20 ms. It prints one JSON line with each service's URL and
stops on `quit` (or EOF).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys

from voice_call.sim.callee import CalleeScript
from voice_call.sim.cartesia import FakeCartesia
from voice_call.sim.deepgram import FakeDeepgram, ListenScript, SpeakScript
from voice_call.sim.elevenlabs import FakeElevenLabs, SttScript
from voice_call.sim.openai import ChatScript, FakeOpenAI, SpeechScript, TranscriptionScript
from voice_call.sim.twilio import TwilioEmulator
from voice_call.sim.voice import synthetic_speech

ACCOUNT_SID = "AC" + "b3" * 16
AUTH_TOKEN = "stream-turns-bench-token"
KEYS = {"openai": "sk-bench", "deepgram": "dg-bench", "elevenlabs": "el-bench", "cartesia": "ca-b"}
LINE = "Tuesday at three works for me."
FIRST_TOKEN_MS = 50
FIRST_BYTE_MS = 40  # every TTS fake: request → first audio
FINAL_MS = 0  # every STT fake: end of the caller's quiet → the final transcript
CHUNK_MS, PER_CHUNK_MS = 100, 20  # every TTS fake: 100 ms of audio every 20 ms
VAD_THRESHOLD = 0.3  # loudness that counts as speech, on the fakes' common scale (vad.py)


async def serve(lines: int) -> None:
    chat = ChatScript(reply="Sure, that works.", first_token_ms=FIRST_TOKEN_MS, per_token_ms=0)
    # OpenAI speech is PCM16 at 24 kHz: 4800 bytes is 100 ms
    speech = SpeechScript(first_byte_ms=FIRST_BYTE_MS, per_chunk_ms=PER_CHUNK_MS, chunk_bytes=4800)
    transcription = TranscriptionScript(
        source=lambda turn: LINE, first_delta_ms=FINAL_MS, per_word_ms=0
    )
    listen = ListenScript(
        source=lambda turn: LINE,
        first_result_ms=0,
        per_word_ms=0,
        final_ms=FINAL_MS,
        vad_threshold=VAD_THRESHOLD,
    )
    speak = SpeakScript(first_byte_ms=FIRST_BYTE_MS, per_chunk_ms=PER_CHUNK_MS, chunk_ms=CHUNK_MS)
    scribe = SttScript(
        source=lambda index: LINE, first_partial_ms=0, per_word_ms=0, commit_ms=FINAL_MS
    )
    callee = CalleeScript(answer_delay_ms=200, replies=(LINE,) * lines, reply_delay_ms=300)
    async with (
        FakeOpenAI(KEYS["openai"], chat=chat, speech=speech, transcription=transcription) as ai,
        FakeDeepgram(KEYS["deepgram"], listen=listen, speak=speak) as deepgram,
        FakeElevenLabs(
            KEYS["elevenlabs"],
            first_byte_ms=FIRST_BYTE_MS,
            per_chunk_ms=PER_CHUNK_MS,
            chunk_ms=CHUNK_MS,
            transcription=scribe,
        ) as elevenlabs,
        FakeCartesia(
            KEYS["cartesia"],
            first_byte_ms=FIRST_BYTE_MS,
            per_chunk_ms=PER_CHUNK_MS,
            chunk_ms=CHUNK_MS,
        ) as cartesia,
        TwilioEmulator(
            ACCOUNT_SID,
            AUTH_TOKEN,
            script=callee,
            speech=synthetic_speech,
        ) as emu,
    ):
        urls = {
            "twilio": emu.url,
            "openai": ai.url,
            "openai_stt": ai.realtime_url,
            "deepgram": deepgram.url,
            "deepgram_stt": deepgram.listen_url,
            "elevenlabs": elevenlabs.url,
            "elevenlabs_stt": elevenlabs.stt_url,
            "cartesia": cartesia.ws_url,
        }
        print(json.dumps(urls), flush=True)
        loop = asyncio.get_running_loop()
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() not in ("quit", ""):
            pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, required=True)
    parser.add_argument("--core", type=int, default=1)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > args.core:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {args.core})
    asyncio.run(serve(args.lines))


if __name__ == "__main__":
    main()
