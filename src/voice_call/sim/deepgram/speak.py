"""`POST /v1/speak`: Aura text-to-speech, the audio streamed back as it is synthesised.

Query: `model` (default aura-asteria-en), `encoding`, `sample_rate`, `container`; body
`{"text": …}`. Only raw audio a phone line can take is served: `mulaw` / `alaw` (8000 or 16000
Hz) and `linear16` (8000–48000 Hz), headerless with `container=none`, or behind a WAV header,
which is the real API's default container for them. The real default *encoding* is MP3, so a
request that does not name a raw one is refused with a 400 saying so — sending MP3 (or a WAV
header) down a phone line is the bug to catch.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from voice_call.audio.g711 import SAMPLE_RATE, pcm16_to_alaw, pcm16_to_ulaw
from voice_call.sim.ai_http import paced, parse_json, speech_pcm16, split
from voice_call.sim.deepgram.errors import bad_request, error_response
from voice_call.sim.voice import synthetic_speech

RATES = {"mulaw": (8000, 16000), "alaw": (8000, 16000), "linear16": (8000, 16000, 24000, 48000)}
DEFAULT_RATE = {"mulaw": 8000, "alaw": 8000, "linear16": 24000}
MEDIA_TYPES = {"mulaw": "audio/basic", "alaw": "audio/x-alaw-basic", "linear16": "audio/l16"}
WAV_FORMAT = {"linear16": (1, 16), "alaw": (6, 8), "mulaw": (7, 8)}
MAX_CHARACTERS = 2000  # [M] the documented limit per request


@dataclass
class SpeakScript:
    """Timing of the fake synthesiser, its audio, and errors on demand."""

    first_byte_ms: float = 150
    per_chunk_ms: float = 20
    chunk_ms: int = 50  # audio per streamed chunk
    # (text, rate) -> PCM16 LE; default: the callee's deterministic synthetic voice
    audio: Callable[[str, int], bytes] | None = None
    # every request answers this (status, err_code, err_msg) instead of audio, while set
    fail: tuple[int, str, str] | None = None

    def render(self, text: str, encoding: str, rate: int) -> bytes:
        if encoding == "mulaw" and rate == SAMPLE_RATE and self.audio is None:
            return synthetic_speech(text)  # the callee's voice, byte for byte
        pcm = self.audio(text, rate) if self.audio is not None else speech_pcm16(text, rate)
        samples = np.frombuffer(pcm, dtype="<i2")
        if encoding == "mulaw":
            return bytes(pcm16_to_ulaw(samples))
        if encoding == "alaw":
            return bytes(pcm16_to_alaw(samples))
        return pcm


def wav_header(encoding: str, rate: int) -> bytes:
    """A streaming WAV header (sizes unknown: the maximum, as streaming encoders write)."""
    tag, bits = WAV_FORMAT[encoding]
    block = bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, tag, 1, rate, rate * block, block, bits)
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
    )


def _format(request: Request) -> tuple[str, int, str] | Response:
    query = request.query_params
    encoding = query.get("encoding")
    if encoding is None or encoding in ("mp3", "opus", "flac", "aac"):
        name = encoding or "mp3 (the default)"
        return bad_request(
            f"This fake serves only raw audio (encoding=mulaw|alaw|linear16), not {name}."
            " The real API defaults to MP3: ask for a raw encoding explicitly."
        )
    if encoding not in RATES:
        return bad_request(f"Invalid value for `encoding`: '{encoding}'.")
    given = query.get("sample_rate")
    if given is not None and (not given.isdigit() or int(given) not in RATES[encoding]):
        rates = ", ".join(str(r) for r in RATES[encoding])
        return bad_request(f"`sample_rate` for {encoding} must be one of {rates}, got '{given}'.")
    container = query.get("container", "wav")
    if container not in ("none", "wav"):
        return bad_request(f"`container` for {encoding} must be none or wav, got '{container}'.")
    rate = int(given) if given is not None else DEFAULT_RATE[encoding]
    return encoding, rate, container


async def speak(request: Request, script: SpeakScript, time_scale: float) -> Response:
    if script.fail is not None:
        return error_response(*script.fail)
    fmt = _format(request)
    if isinstance(fmt, Response):
        return fmt
    encoding, rate, container = fmt
    ok, body = parse_json(await request.body())
    text = body.get("text") if ok and isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        return bad_request("The request body must be JSON with a non-empty string `text`.")
    if len(text) > MAX_CHARACTERS:
        return error_response(
            413, "PAYLOAD_TOO_LARGE", f"Text exceeds the {MAX_CHARACTERS} character limit."
        )
    audio = script.render(text, encoding, rate)
    bytes_per_ms = rate // 1000 * (2 if encoding == "linear16" else 1)
    chunks = split(audio, max(1, script.chunk_ms * bytes_per_ms))
    if container == "wav":
        chunks = [wav_header(encoding, rate), *chunks]
    return StreamingResponse(
        paced(chunks, script.first_byte_ms, script.per_chunk_ms, time_scale),
        media_type="audio/wav" if container == "wav" else MEDIA_TYPES[encoding],
    )
