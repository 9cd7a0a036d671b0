"""A fake OpenAI API on a loopback port: chat completions, speech, Realtime transcription.

Public API::

    fake = FakeOpenAI(
        "sk-test",                                   # the only key it accepts (Bearer)
        chat=ChatScript(reply="Hi!" | ["a", "b"] | echo_last_user,
                        first_token_ms=200, per_token_ms=20),
        speech=SpeechScript(first_byte_ms=150, per_chunk_ms=20, chunk_bytes=4800),
        transcription=TranscriptionScript(["caller line 1", ...], source=None,
                                          first_delta_ms=150, per_word_ms=40),
        conversation=ConversationScript(["Hello!", ToolCall("lookup", {...}), ...],
                                        caller=["caller line 1", ...], first_audio_ms=300),
        time_scale=1.0,                              # multiplies every delay; 0.05 in tests
    )
    async with fake:
        fake.url            # "http://127.0.0.1:PORT/v1"  → openai.AsyncOpenAI(base_url=fake.url)
        fake.realtime_url   # "ws://127.0.0.1:PORT/v1/realtime?intent=transcription"
        fake.requests       # list[LoggedRequest]: every HTTP request and its status, in order
        fake.conversation_url  # "ws://127.0.0.1:PORT/v1/realtime" (the client adds ?model=)
        fake.sessions       # list[RealtimeSession]: each socket's received / sent events
        fake.conversations  # list[ConversationSession]: the same for speech-to-speech sockets
        fake.transcription.say("yes please")   # what the caller's next turn transcribes to
    fake.app                # the bare ASGI app (e.g. for httpx.ASGITransport)

Endpoints:

* `POST /v1/chat/completions` — `stream: true` gives SSE `chat.completion.chunk` events (role
  delta, one content delta per word-token, finish chunk, usage chunk with
  `stream_options.include_usage`, `[DONE]`); otherwise a `chat.completion`. `max_tokens` /
  `max_completion_tokens` truncate with `finish_reason: "length"`.
* `POST /v1/audio/speech` — `response_format` `pcm` (24 kHz 16-bit mono LE, headerless) or
  `wav`; anything else, including the API's default `mp3`, is a 400 naming the fix.
* `WS /v1/realtime?intent=transcription` — see `voice_call.sim.openai.realtime`; any other
  query (`?model=gpt-realtime`) is a speech-to-speech session, `voice_call.sim.openai.conversation`.
  Auth is
  `Authorization: Bearer` or the browser's `openai-insecure-api-key.<key>` subprotocol; a wrong
  key gets an `error` event (`code: "invalid_api_key"`) and a close, not an HTTP refusal.

Errors use OpenAI's shape `{"error": {"message", "type", "param", "code"}}`: 401 for a missing
or wrong key (`code: "invalid_api_key"`), 400 for malformed bodies, 404 for unknown paths.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voice_call.sim.ai_http import Handler, LoggedRequest, logged
from voice_call.sim.openai.chat import ChatCompletions, ChatScript, echo_last_user
from voice_call.sim.openai.conversation import (
    ConversationScript,
    ConversationSession,
    ToolCall,
    serve_conversation,
)
from voice_call.sim.openai.errors import auth_failure, error_response
from voice_call.sim.openai.realtime import (
    RealtimeSession,
    TranscriptionScript,
    TranscriptTurn,
    serve_transcription,
)
from voice_call.sim.openai.speech import AudioSpeech, SpeechScript
from voice_call.sim.server import LoopbackService

__all__ = [
    "ChatScript",
    "ConversationScript",
    "ConversationSession",
    "FakeOpenAI",
    "LoggedRequest",
    "RealtimeSession",
    "SpeechScript",
    "ToolCall",
    "TranscriptTurn",
    "TranscriptionScript",
    "echo_last_user",
]


class FakeOpenAI(LoopbackService):
    def __init__(
        self,
        api_key: str = "sk-test",
        *,
        chat: ChatScript | None = None,
        speech: SpeechScript | None = None,
        transcription: TranscriptionScript | None = None,
        conversation: ConversationScript | None = None,
        time_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.chat = chat or ChatScript()
        self.speech = speech or SpeechScript()
        self.transcription = transcription or TranscriptionScript()
        self.conversation = conversation or ConversationScript()
        self.time_scale = time_scale
        self.requests: list[LoggedRequest] = []
        self.sessions: list[RealtimeSession] = []
        self.conversations: list[ConversationSession] = []
        scale = lambda: self.time_scale  # noqa: E731 - read at request time, so tests may retune
        self.app = Starlette(
            routes=[
                Route(
                    "/v1/chat/completions",
                    self._http(ChatCompletions(self.chat, scale)),
                    methods=["POST"],
                ),
                Route(
                    "/v1/audio/speech",
                    self._http(AudioSpeech(self.speech, scale)),
                    methods=["POST"],
                ),
                WebSocketRoute("/v1/realtime", self._realtime),
            ],
            exception_handlers={HTTPException: self._http_error},
        )

    def _http(self, handler: Handler) -> Handler:
        async def authed(request: Request) -> Response:
            response = auth_failure(request, self.api_key) or await handler(request)
            response.headers["x-request-id"] = "req_" + secrets.token_hex(16)
            return response

        return logged(self.requests, authed)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = f"Invalid URL ({request.method} {request.url.path})"
        return error_response(status, message)

    async def _realtime(self, ws: WebSocket) -> None:
        if ws.query_params.get("intent") != "transcription":
            await serve_conversation(
                ws, self.api_key, self.conversation, self.time_scale, self.conversations
            )
            return
        await serve_transcription(
            ws, self.api_key, self.transcription, self.time_scale, self.sessions
        )

    def asgi_app(self) -> Any:
        return self.app

    @property
    def url(self) -> str:
        return super().url + "/v1"

    @property
    def realtime_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/realtime?intent=transcription"

    @property
    def conversation_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/realtime"
