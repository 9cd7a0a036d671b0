"""espeak-ng, locally and offline: the default voice when no TTS key is configured.

Runs `espeak-ng --stdout --stdin` per sentence and streams the WAV it writes (16-bit mono,
22,050 Hz) as it comes. A missing executable is reported when the engine is built (at server
start), not on the first call.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import struct
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from voice_call.audio.resample import SUPPORTED_RATES
from voice_call.speech.tts.base import TtsAudio, TtsError, TtsUnavailable
from voice_call.speech.tts.settings import option

READ_BYTES = 4096


class EspeakTts:
    name = "espeak"

    def __init__(self, options: Mapping[str, Any], *, timeout_s: float = 8.0) -> None:
        command = option(options, "espeak", "command", str, "espeak-ng")
        found = shutil.which(command)
        if found is None:
            raise TtsUnavailable(
                f"tts: {command} is not installed (needed for the offline voice) — install it"
                " (e.g. apt install espeak-ng, brew install espeak-ng), or set an OpenAI or"
                " ElevenLabs key for calls"
            )
        self.executable = found
        self.voice = option(options, "espeak", "voice", str, "en-us")
        self.words_per_minute = option(options, "espeak", "rate", int, 175)
        self.timeout_s = timeout_s

    async def synthesize(self, text: str) -> AsyncGenerator[TtsAudio, None]:
        process = await asyncio.create_subprocess_exec(
            self.executable,
            "--stdout",
            "--stdin",
            "-v",
            self.voice,
            "-s",
            str(self.words_per_minute),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(text.encode() + b"\n")
            await process.stdin.drain()
            process.stdin.close()
            try:
                rate = await _read_wav_header(process.stdout)
            except TtsError as exc:
                raise await _failure(process) or exc from None
            while chunk := await process.stdout.read(READ_BYTES):
                yield TtsAudio(chunk, rate)
            failure = await _failure(process)
            if failure is not None:
                raise failure
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

    async def warm(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def _failure(process: asyncio.subprocess.Process) -> TtsError | None:
    """Why espeak-ng failed (its exit status and stderr), or None when it did not."""
    if await process.wait() == 0:
        return None
    error = b"" if process.stderr is None else await process.stderr.read(300)
    detail = error.decode(errors="replace").strip() or f"exit status {process.returncode}"
    return TtsError(f"espeak-ng failed: {detail}")


async def _read_wav_header(stream: asyncio.StreamReader) -> int:
    """Skip RIFF chunks up to `data`; the sample rate, after checking 16-bit mono PCM."""
    try:
        riff = await stream.readexactly(12)
        if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            raise TtsError("espeak-ng did not write a WAV stream")
        rate = 0
        while True:
            kind, size = struct.unpack("<4sI", await stream.readexactly(8))
            if kind == b"data":
                break
            body = await stream.readexactly(min(size, 1 << 16) + size % 2)
            if kind == b"fmt ":
                fmt, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
                if fmt != 1 or channels != 1 or bits != 16:
                    raise TtsError("espeak-ng wrote audio that is not 16-bit mono PCM")
    except asyncio.IncompleteReadError:
        raise TtsError("espeak-ng ended before any audio") from None
    if rate not in SUPPORTED_RATES:
        raise TtsError(f"espeak-ng wrote {rate} Hz audio, which cannot be resampled here")
    return rate
