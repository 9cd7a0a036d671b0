"""A fake TTS engine: deterministic audio with configurable timing, no network.

For tests, the benchmark and offline development (`tts: {provider: "fake"}`). The "voice" is a
two-partial tone per character (pitch from the character), 60 ms a character by default, loud
enough to look like speech to an energy detector. Options: `msPerChar`, `rate`,
`firstChunkMs` (wait before the first chunk), `chunkMs` (audio per chunk), `perChunkMs` (wait
between chunks; 0 = as fast as the consumer takes them), `error` (fail with this message).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import numpy as np

from voice_call.audio.resample import check_rate
from voice_call.speech.tts.base import TtsAudio, TtsError
from voice_call.speech.tts.settings import option


@functools.lru_cache(maxsize=64)
def tone_speech(text: str, rate: int, ms_per_char: float) -> bytes:
    per = max(1, int(rate * ms_per_char / 1000))
    t = np.arange(per) / rate
    envelope = np.sin(np.pi * np.arange(per) / per)
    pieces = []
    for ch in text or " ":
        if ch.isspace():
            pieces.append(np.zeros(per // 2))
            continue
        pitch = 120 + (ord(ch) * 37) % 140
        pieces.append(
            envelope * (np.sin(2 * np.pi * pitch * t) + 0.4 * np.sin(6 * np.pi * pitch * t))
        )
    return bytes((np.concatenate(pieces) * 8000).astype("<i2").tobytes())


class FakeTts:
    name = "fake"

    def __init__(self, options: Mapping[str, Any] | None = None, *, timeout_s: float = 8.0) -> None:
        options = options or {}
        self.rate = check_rate(option(options, "fake", "rate", int, 24000))
        self.ms_per_char = option(options, "fake", "msPerChar", float, 60)
        self.first_chunk_ms = option(options, "fake", "firstChunkMs", float, 20)
        self.chunk_ms = option(options, "fake", "chunkMs", float, 100)
        self.per_chunk_ms = option(options, "fake", "perChunkMs", float, 0)
        self.error = option(options, "fake", "error", str)
        self.requests: list[str] = []
        self.warmed = 0

    async def synthesize(self, text: str) -> AsyncGenerator[TtsAudio, None]:
        self.requests.append(text)
        await asyncio.sleep(self.first_chunk_ms / 1000)
        if self.error:
            raise TtsError(self.error)
        audio = tone_speech(text, self.rate, self.ms_per_char)
        step = max(2, int(self.rate * self.chunk_ms / 1000) * 2)
        for index in range(0, len(audio), step):
            if index and self.per_chunk_ms:
                await asyncio.sleep(self.per_chunk_ms / 1000)
            yield TtsAudio(audio[index : index + step], self.rate)

    async def warm(self) -> None:
        self.warmed += 1

    async def close(self) -> None:
        return None
