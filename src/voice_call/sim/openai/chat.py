"""`POST /v1/chat/completions`: a scripted reply, streamed as SSE chunks or returned whole.

Streaming follows the real wire format: every event is `data: <chat.completion.chunk>`; the
first chunk carries `delta.role = "assistant"` and empty content, then one chunk per token, then
a chunk with an empty delta and `finish_reason`, then (with `stream_options.include_usage`) a
chunk with `choices: []` and the usage, then `data: [DONE]`.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from voice_call.sim.ai_http import is_int, parse_json, pause
from voice_call.sim.openai.errors import (
    NOT_JSON,
    InvalidRequest,
    bad_request,
    invalid_type,
    invalid_value,
    missing,
)

Messages = list[dict[str, Any]]
ReplyFunction = Callable[[Messages], str]
ROLES = ["system", "developer", "user", "assistant", "tool", "function"]


def message_text(message: dict[str, Any]) -> str:
    """A message's text: a plain string, or the `text` parts of a content array."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def echo_last_user(messages: Messages) -> str:
    """A reply function: repeat the last user message (handy for end-to-end tests)."""
    users = [m for m in messages if m.get("role") == "user"]
    return message_text(users[-1]) if users else ""


@dataclass
class ChatScript:
    """What the fake model says: a fixed reply, replies cycled per request, or a function."""

    reply: str | Sequence[str] | ReplyFunction = "Hello! How can I help you today?"
    first_token_ms: float = 200
    per_token_ms: float = 20
    _served: int = field(default=0, init=False, repr=False)

    def next_reply(self, messages: Messages) -> str:
        if isinstance(self.reply, str):
            return self.reply
        if callable(self.reply):
            return self.reply(messages)
        if not self.reply:
            return ""
        text = self.reply[self._served % len(self.reply)]
        self._served += 1
        return text


def tokens(text: str) -> list[str]:
    """Word-sized tokens that keep their leading space, as GPT tokenizers emit them."""
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: Messages
    stream: bool
    include_usage: bool
    max_tokens: int | None


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate the fields the fake uses, with the real API's 400 messages; ignore the rest."""
    if not isinstance(body, dict):
        raise invalid_type("body", "an object", body)
    model = body.get("model")
    if "model" not in body:
        raise missing("model")
    if not isinstance(model, str):
        raise invalid_type("model", "a string", model)
    if "messages" not in body:
        raise missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise invalid_type("messages", "an array", messages)
    if not messages:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid_type(f"messages[{index}]", "an object", message)
        role = message.get("role")
        if role not in ROLES:
            raise invalid_value(f"messages[{index}].role", role, ROLES)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        if not isinstance(options, dict):
            raise invalid_type("stream_options", "an object", options)
        flag = options.get("include_usage")
        if flag is not None and not isinstance(flag, bool):
            raise invalid_type("stream_options.include_usage", "a boolean", flag)
        include_usage = bool(flag)
    limit: int | None = None
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not is_int(value):
            raise invalid_type(name, "an integer", value)
        if value < 1:
            raise InvalidRequest(
                f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
                f"but got {value} instead.",
                param=name,
                code="integer_below_min_value",
            )
        limit = value if limit is None else min(limit, value)
    n = body.get("n")
    if n is not None and n != 1:
        # The real API serves n > 1; a voice agent never asks for it, so the fake refuses openly.
        raise InvalidRequest("This fake serves only n=1.", param="n", code="unsupported_value")
    return ChatRequest(model, messages, bool(stream), include_usage, limit)


def usage(messages: Messages, completion_tokens: int) -> dict[str, int]:
    # ~4 characters a token, as OpenAI's own rule of thumb; nothing depends on the exact figure.
    prompt = max(1, len(json.dumps(messages, default=str)) // 4)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }


class ChatCompletions:
    """The route handler, bound to a script and the fake's time scale."""

    def __init__(self, script: ChatScript, time_scale: Callable[[], float]) -> None:
        self.script = script
        self.time_scale = time_scale

    async def __call__(self, request: Request) -> Response:
        ok, body = parse_json(await request.body())
        try:
            if not ok:
                raise InvalidRequest(NOT_JSON)
            chat = parse_chat_request(body)
        except InvalidRequest as exc:
            return bad_request(exc)
        pieces = tokens(self.script.next_reply(chat.messages))
        finish = "stop"
        if chat.max_tokens is not None and len(pieces) > chat.max_tokens:
            pieces, finish = pieces[: chat.max_tokens], "length"
        head = {
            "id": "chatcmpl-" + secrets.token_hex(12),
            "created": int(time.time()),
            "model": chat.model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        if chat.stream:
            return StreamingResponse(
                self._events(head, chat, pieces, finish), media_type="text/event-stream"
            )
        scale = self.time_scale()
        await pause(self.script.first_token_ms, scale)
        await pause(self.script.per_token_ms * max(0, len(pieces) - 1), scale)
        choice = {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "".join(pieces),
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": finish,
        }
        return JSONResponse(
            {
                **head,
                "object": "chat.completion",
                "choices": [choice],
                "usage": usage(chat.messages, len(pieces)),
            }
        )

    async def _events(
        self, head: dict[str, Any], chat: ChatRequest, pieces: list[str], finish: str
    ) -> AsyncIterator[str]:
        scale = self.time_scale()

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            event = {**head, "object": "chat.completion.chunk", "choices": choices, **extra}
            if chat.include_usage:
                event.setdefault(
                    "usage", None
                )  # every chunk carries the key; only the last a value
            return f"data: {json.dumps(event)}\n\n"

        def delta(content: dict[str, Any], reason: str | None = None) -> str:
            choice = {"index": 0, "delta": content, "logprobs": None, "finish_reason": reason}
            return chunk([choice])

        await pause(self.script.first_token_ms, scale)
        yield delta({"role": "assistant", "content": "", "refusal": None})
        for index, piece in enumerate(pieces):
            if index:
                await pause(self.script.per_token_ms, scale)
            yield delta({"content": piece})
        yield delta({}, finish)
        if chat.include_usage:
            yield chunk([], usage=usage(chat.messages, len(pieces)))
        yield "data: [DONE]\n\n"
