"""A fake ElevenLabs API on a loopback port: text-to-speech here, realtime STT in stt.py.

Public API::

    fake = FakeElevenLabs(
        "el-test",                 # the only `xi-api-key` it accepts
        first_byte_ms=150,         # wait before the first audio byte
        per_chunk_ms=20,           # wait between chunks
        chunk_ms=50,               # audio per chunk
        voice_ids=None,            # a collection to make other voice ids 404; None: any id
        audio=None,                # (text, rate) -> PCM16 LE; default: deterministic voice
        time_scale=1.0,            # multiplies every delay
        transcription=SttScript(["caller line 1", ...], first_partial_ms=150),
    )
    async with fake:
        fake.url       # "http://127.0.0.1:PORT" — the API root; paths start with /v1
        fake.requests  # list[LoggedRequest], in order, with the status answered
        fake.stt_url   # "ws://127.0.0.1:PORT/v1/speech-to-text/realtime"
        fake.stt_sessions            # list[SttSession]: each STT socket's traffic
        fake.transcription.say("…")  # what the caller's next segment transcribes to
        await fake.drop_stt()        # close every STT socket (a lost connection)
    fake.app           # the bare ASGI app

Endpoints: `POST /v1/text-to-speech/{voice_id}/stream` (chunked, paced) and
`POST /v1/text-to-speech/{voice_id}` (the same bytes, one body), JSON body `{"text", ...}`.
`output_format` (query) must be explicit and raw: `ulaw_8000` (headerless G.711 µ-law, what a
phone line plays) or `pcm_8000|16000|22050|24000|44100|48000` (headerless 16-bit LE mono). The
real default is `mp3_44100_128`; this fake answers any `mp3_*` / `opus_*` / `alaw_*` with a 400
that says to ask for a raw format, because sending MP3 to a phone line is the bug to catch.

Errors use ElevenLabs' shapes: 401 `{"detail": {"status": "invalid_api_key" |
"needs_authorization", "message"}}`; 422 `{"detail": [{"type", "loc", "msg", "input"}]}` for a
missing or non-string `text` or an unknown `output_format`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute

from voice_call.audio.g711 import SAMPLE_RATE, pcm16_to_ulaw
from voice_call.sim.ai_http import LoggedRequest, logged, paced, parse_json, speech_pcm16, split
from voice_call.sim.elevenlabs.stt import RealtimeStt, SttScript, SttSession
from voice_call.sim.server import LoopbackService
from voice_call.sim.voice import synthetic_speech

__all__ = ["FakeElevenLabs", "LoggedRequest"]

STT_PATH = "/v1/speech-to-text/realtime"
PCM_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
DEFAULT_FORMAT = "mp3_44100_128"
# [M] Content-Types of the raw formats; clients read the bytes and ignore them.
ULAW_TYPE, PCM_TYPE = "audio/basic", "audio/pcm"

AudioFunction = Callable[[str, int], bytes]


def detail(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"status": code, "message": message}}, status_code=status)


def validation_error(kind: str, loc: list[Any], msg: str, value: Any) -> JSONResponse:
    # [M] ElevenLabs validates with FastAPI; this is pydantic v2's error-list shape.
    return JSONResponse(
        {"detail": [{"type": kind, "loc": loc, "msg": msg, "input": value}]}, status_code=422
    )


def parse_format(name: str) -> tuple[str, int] | JSONResponse:
    """`ulaw_8000` / `pcm_<rate>` → (codec, rate), or the error response for anything else."""
    codec, _, rest = name.partition("_")
    if name == "ulaw_8000":
        return "ulaw", SAMPLE_RATE
    if codec == "pcm" and rest.isdigit() and int(rest) in PCM_RATES:
        return "pcm", int(rest)
    if codec in ("mp3", "opus", "alaw"):
        return detail(
            400,
            "unsupported_output_format",
            f"This fake serves only raw formats (ulaw_8000, pcm_<rate>), not '{name}'. "
            f"The real API defaults to {DEFAULT_FORMAT}: ask for a raw format explicitly.",
        )
    return validation_error(
        "enum",
        ["query", "output_format"],
        f"Input should be a valid output format, not '{name}'",
        name,
    )


class FakeElevenLabs(LoopbackService):
    def __init__(
        self,
        api_key: str = "el-test",
        *,
        first_byte_ms: float = 150,
        per_chunk_ms: float = 20,
        chunk_ms: int = 50,
        voice_ids: Collection[str] | None = None,
        audio: AudioFunction | None = None,
        time_scale: float = 1.0,
        transcription: SttScript | None = None,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.first_byte_ms = first_byte_ms
        self.per_chunk_ms = per_chunk_ms
        self.chunk_ms = chunk_ms
        self.voice_ids = voice_ids
        self.audio = audio
        self.time_scale = time_scale
        self.requests: list[LoggedRequest] = []
        self.transcription = transcription or SttScript()
        self._stt = RealtimeStt(api_key, self.transcription, lambda: self.time_scale)
        path = "/v1/text-to-speech/{voice_id}"
        self.app = Starlette(
            routes=[
                Route(path + "/stream", logged(self.requests, self._stream), methods=["POST"]),
                Route(path, logged(self.requests, self._whole), methods=["POST"]),
                WebSocketRoute(STT_PATH, self._stt.serve),
            ]
        )

    @property
    def stt_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + STT_PATH

    @property
    def stt_sessions(self) -> list[SttSession]:
        return self._stt.sessions

    async def drop_stt(self, code: int = 1011, reason: str = "internal error") -> None:
        await self._stt.drop(code, reason)

    async def _stream(self, request: Request) -> Response:
        return await self._speak(request, stream=True)

    async def _whole(self, request: Request) -> Response:
        return await self._speak(request, stream=False)

    def _check(self, request: Request) -> JSONResponse | None:
        key = request.headers.get("xi-api-key")
        if key is None:
            return detail(
                401,
                "needs_authorization",
                "Neither authorization header nor xi-api-key received, please provide one.",
            )
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            return detail(401, "invalid_api_key", "Invalid API key")
        voice_id = request.path_params["voice_id"]
        if self.voice_ids is not None and voice_id not in self.voice_ids:
            # [M] status code and wording of the real unknown-voice error.
            return detail(
                404, "voice_not_found", f"A voice with voice_id {voice_id} was not found."
            )
        return None

    async def _speak(self, request: Request, *, stream: bool) -> Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        ok, body = parse_json(await request.body())
        if not ok:
            return validation_error("json_invalid", ["body"], "JSON decode error", None)
        if not isinstance(body, dict):
            return validation_error(
                "model_attributes_type",
                ["body"],
                "Input should be a valid dictionary or object to extract fields from",
                body,
            )
        if "text" not in body:
            return validation_error("missing", ["body", "text"], "Field required", body)
        text = body["text"]
        if not isinstance(text, str):
            return validation_error(
                "string_type", ["body", "text"], "Input should be a valid string", text
            )
        fmt = parse_format(request.query_params.get("output_format", DEFAULT_FORMAT))
        if isinstance(fmt, Response):
            return fmt
        codec, rate = fmt
        audio = self._render(text, codec, rate)
        media_type = ULAW_TYPE if codec == "ulaw" else PCM_TYPE
        bytes_per_ms = rate // 1000 * (1 if codec == "ulaw" else 2)
        chunks = split(audio, max(1, self.chunk_ms * bytes_per_ms))
        scale = self.time_scale
        if not stream:
            # The whole-file endpoint answers once synthesis is done: all the chunks' time.
            async for _ in paced(chunks, self.first_byte_ms, self.per_chunk_ms, scale):
                pass
            return Response(audio, media_type=media_type)
        return StreamingResponse(
            paced(chunks, self.first_byte_ms, self.per_chunk_ms, scale), media_type=media_type
        )

    def _render(self, text: str, codec: str, rate: int) -> bytes:
        if codec == "ulaw":
            if self.audio is None:
                return synthetic_speech(text)  # the callee's voice, byte for byte
            return pcm16_to_ulaw(np.frombuffer(self.audio(text, rate), dtype="<i2"))
        return self.audio(text, rate) if self.audio is not None else speech_pcm16(text, rate)

    def asgi_app(self) -> Any:
        return self.app
