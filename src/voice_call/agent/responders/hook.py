"""The `hook` responder: POST each turn as JSON to a URL of yours, speak what it answers.

Request (`POST responder.url`, `Content-Type: application/json`, plus `responder.headers`)::

    {"callId", "providerCallId", "direction", "mode", "from", "to",
     "agentId": "<the call's agent>", "sessionKey": "<initiate's sessionKey, or null>",
     "text": "<the caller's last words>",
     "transcript": [{"at", "speaker": "bot"|"user", "text"}, ...],   # this call
     "history": [...same shape...]}                                 # earlier calls (sessionScope)

Answer, either:

- JSON `{"reply": "text to say", "endCall": false}` (`reply` null or "" stays quiet;
  `endCall: true` hangs up after the reply), or
- `text/plain`: the body is the reply, streamed — sentences are spoken as they arrive, so a
  hook that streams its own model output gets the same early start as the `openai` responder.

Either way only the reply's spoken words are said (agent/spoken.py): a model's
`{"spoken": "…"}` is said as its text, planning lead-ins and reasoning blocks are dropped.

Anything else (a non-2xx status, malformed JSON, a wrong type) is a ResponderError, and the
caller hears the apology.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from voice_call.agent.memory import DEFAULT_AGENT
from voice_call.agent.prompt import response_timeout_ms
from voice_call.agent.responders.base import ReplyContext, ResponderError, last_user_line
from voice_call.agent.spoken import SpokenStream, extract_spoken
from voice_call.config import Config
from voice_call.models import CallRecord, TranscriptEntry
from voice_call.speech.sentences import SentenceChunker, split_sentences

MAX_REPLY_CHARS = 4000
MAX_BODY_BYTES = 64 * 1024


class HookAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reply: StrictStr | None = Field(default=None, max_length=MAX_REPLY_CHARS)
    end_call: StrictBool = Field(default=False, alias="endCall")


def turn_payload(call: CallRecord, history: list[TranscriptEntry]) -> dict[str, Any]:
    def lines(entries: list[TranscriptEntry]) -> list[dict[str, Any]]:
        return [
            {"at": e.at, "speaker": e.speaker.value, "text": e.text} for e in entries if e.final
        ]

    return {
        "callId": call.call_id,
        "providerCallId": call.provider_call_id,
        "direction": call.direction.value,
        "mode": call.mode.value,
        "from": call.from_number,
        "to": call.to_number,
        "agentId": call.agent_id or DEFAULT_AGENT,
        "sessionKey": call.session_key,
        "text": last_user_line(call) or "",
        "transcript": lines(call.transcript),
        "history": lines(history),
    }


def parse_answer(body: bytes) -> HookAnswer:
    """A JSON answer, validated; raises ResponderError naming what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ResponderError("the hook answered JSON that does not parse") from None
    if not isinstance(data, dict):
        raise ResponderError('the hook must answer a JSON object like {"reply": "..."}')
    try:
        return HookAnswer.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise ResponderError(f"the hook's answer is invalid at {where}: {err['msg']}") from None


class HookResponder:
    def __init__(self, config: Config, http: httpx.AsyncClient | None = None) -> None:
        assert config.responder.url is not None, "validated by the config"
        self.config = config
        self.url = config.responder.url
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(config.response_timeout_ms / 1000, connect=5.0)
        )

    @classmethod
    def from_config(cls, config: Config) -> HookResponder:
        return cls(config)

    async def stream(self, call: CallRecord, context: ReplyContext) -> AsyncIterator[str]:
        payload = turn_payload(call, await context.history())
        headers = {**self.config.responder.headers, "Accept": "application/json, text/plain"}
        try:
            async with self._http.stream(
                "POST",
                self.url,
                json=payload,
                headers=headers,
                timeout=response_timeout_ms(self.config, call) / 1000,
            ) as response:
                if not 200 <= response.status_code < 300:
                    raise ResponderError(f"the hook answered HTTP {response.status_code}")
                kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if kind.startswith("text/"):
                    async for sentence in self._text(response, context):
                        yield sentence
                    return
                body = await _read_capped(response)
        except httpx.TimeoutException:
            raise ResponderError(f"the hook at {self.url} timed out") from None
        except httpx.HTTPError as exc:
            raise ResponderError(f"could not reach the hook at {self.url}: {exc}") from None
        context.first_token()
        answer = parse_answer(body)
        for sentence in split_sentences(extract_spoken(answer.reply or "")):
            yield sentence
        if answer.end_call:
            context.request_end("hook endCall")

    async def _text(self, response: httpx.Response, context: ReplyContext) -> AsyncIterator[str]:
        chunker = SentenceChunker()
        words = SpokenStream()
        size = 0
        async for piece in response.aiter_text():
            size += len(piece)
            if size > MAX_REPLY_CHARS:
                raise ResponderError(
                    f"the hook's reply is longer than {MAX_REPLY_CHARS} characters"
                )
            if piece:
                context.first_token()
            for sentence in chunker.feed(words.feed(piece)):
                yield sentence
        for sentence in chunker.feed(words.finish()):
            yield sentence
        rest = chunker.flush()
        if rest:
            yield rest

    async def aclose(self) -> None:
        await self._http.aclose()


async def _read_capped(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ResponderError(f"the hook's answer is larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)
