"""`POST /v1/audio/speech`: text to 24 kHz 16-bit mono PCM, streamed in chunks.

Only the raw formats a phone bridge can use without a decoder are served: `pcm` (headerless
little-endian samples) and `wav` (the same behind a RIFF header). The real API's default is
`mp3`, so a request that does not name its format is refused with a 400 that says so — a
provider must ask for PCM explicitly rather than silently receive MP3.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from voice_call.sim.ai_http import is_number, paced, parse_json, speech_pcm16, split
from voice_call.sim.openai.errors import (
    NOT_JSON,
    InvalidRequest,
    bad_request,
    invalid_type,
    invalid_value,
    missing,
)

RATE = 24000
FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
MAX_INPUT = 4096
# [M] The real API's Content-Type for `pcm`; clients read the bytes and ignore it.
MEDIA_TYPES = {"pcm": "audio/pcm", "wav": "audio/wav"}


@dataclass
class SpeechScript:
    """Timing of the fake synthesiser, and optionally the audio itself."""

    first_byte_ms: float = 150
    per_chunk_ms: float = 20
    chunk_bytes: int = 4800  # 100 ms of 24 kHz 16-bit mono
    # (text, speed) -> 24 kHz PCM16; default: the deterministic synthetic voice
    audio: Callable[[str, float], bytes] | None = None

    def render(self, text: str, speed: float) -> bytes:
        if self.audio is not None:
            return self.audio(text, speed)
        return speech_pcm16(text, RATE, speed)


def wav_header(data_bytes: int, rate: int = RATE) -> bytes:
    """A canonical 44-byte RIFF/WAVE header for 16-bit mono PCM of known length."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        1,  # mono
        rate,
        rate * 2,
        2,
        16,
        b"data",
        data_bytes,
    )


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    response_format: str
    speed: float


def parse_speech_request(body: Any) -> SpeechRequest:
    if not isinstance(body, dict):
        raise invalid_type("body", "an object", body)
    for name in ("model", "input", "voice"):
        if name not in body:
            raise missing(name)
    if not isinstance(body["model"], str):
        raise invalid_type("model", "a string", body["model"])
    text = body["input"]
    if not isinstance(text, str):
        raise invalid_type("input", "a string", text)
    if len(text) > MAX_INPUT:
        raise InvalidRequest(
            f"Invalid 'input': string too long. Expected a string with maximum length "
            f"{MAX_INPUT}, but got a string with length {len(text)} instead.",
            param="input",
            code="string_above_max_length",
        )
    voice = body["voice"]
    if not (
        isinstance(voice, str) or (isinstance(voice, dict) and isinstance(voice.get("id"), str))
    ):
        raise invalid_type("voice", "a string or an object with an 'id'", voice)
    fmt = body.get("response_format", "mp3")
    if fmt not in FORMATS:
        raise invalid_value("response_format", fmt, FORMATS)
    if fmt not in MEDIA_TYPES:
        raise InvalidRequest(
            f"This fake serves only response_format 'pcm' or 'wav', not '{fmt}' "
            "(the real API defaults to 'mp3': name the raw format explicitly).",
            param="response_format",
            code="unsupported_value",
        )
    speed = body.get("speed", 1.0)
    if not is_number(speed):
        raise invalid_type("speed", "a number", speed)
    if not 0.25 <= speed <= 4.0:
        raise InvalidRequest(
            f"Invalid 'speed': expected a value between 0.25 and 4.0, but got {speed} instead.",
            param="speed",
            code="invalid_value",
        )
    if body.get("stream_format", "audio") != "audio":
        raise InvalidRequest(
            "This fake serves only stream_format 'audio' (raw bytes), not SSE.",
            param="stream_format",
            code="unsupported_value",
        )
    return SpeechRequest(text, fmt, float(speed))


class AudioSpeech:
    """The route handler, bound to a script and the fake's time scale."""

    def __init__(self, script: SpeechScript, time_scale: Callable[[], float]) -> None:
        self.script = script
        self.time_scale = time_scale

    async def __call__(self, request: Request) -> Response:
        ok, body = parse_json(await request.body())
        try:
            if not ok:
                raise InvalidRequest(NOT_JSON)
            speech = parse_speech_request(body)
        except InvalidRequest as exc:
            return bad_request(exc)
        pcm = self.script.render(speech.text, speech.speed)
        chunks = split(pcm, self.script.chunk_bytes)
        if speech.response_format == "wav":
            # [M] The real service streams WAV with placeholder sizes; this one knows the length.
            chunks = [wav_header(len(pcm)) + (chunks[0] if chunks else b""), *chunks[1:]]
        stream = paced(
            chunks, self.script.first_byte_ms, self.script.per_chunk_ms, self.time_scale()
        )
        return StreamingResponse(stream, media_type=MEDIA_TYPES[speech.response_format])
