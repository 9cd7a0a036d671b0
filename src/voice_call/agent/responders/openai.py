"""The `openai` responder: any OpenAI-compatible chat model, streamed sentence by sentence.

`responseModel` is `provider/model` (default `openai/gpt-4o-mini`). A known provider prefix
picks the server (`openai`, `ollama`, `openrouter`, `groq`); `responder.baseUrl` points at any
other OpenAI-compatible server (vLLM, LM Studio, ...), and the model id is then sent as written
after a known prefix, or whole (so `meta-llama/Llama-3.1-8B` works against vLLM). The key is
`responder.apiKey`, else `openaiApiKey` / `OPENAI_API_KEY`; local servers need none.

The model sees the system prompt (which knows the other party's number, and asks for the
spoken-output contract), lines from earlier calls in the same session (agent/memory.py), then
this call's transcript. Only the reply's spoken words are said (agent/spoken.py: a streamed
`{"spoken": "…"}` is spoken as its string arrives; planning lead-ins are dropped). It may call
the `end_call` tool with a goodbye: the goodbye is spoken and the call hung up after it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from voice_call.agent.prompt import (
    DEFAULT_MODEL,
    instructions,
    response_model,
    response_timeout_ms,
)
from voice_call.agent.responders.base import ReplyContext, ResponderError
from voice_call.agent.spoken import SpokenStream, extract_spoken
from voice_call.config import Config, ConfigError
from voice_call.models import CallRecord, Speaker, TranscriptEntry
from voice_call.numbers import routes
from voice_call.speech.sentences import SentenceChunker, split_sentences

log = logging.getLogger("voice_call.agent.openai")

KNOWN_SERVERS = {
    "openai": "https://api.openai.com/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "groq": "https://api.groq.com/openai/v1",
}
NEEDS_KEY = frozenset({"openai", "openrouter", "groq"})
NO_KEY = "not-needed"  # the SDK insists on a key; local servers ignore it
MAX_CALL_LINES = 200  # this call's most recent transcript lines sent to the model
MAX_GOODBYE_CHARS = 500
DEFAULT_GOODBYE = "Goodbye!"

END_CALL_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "end_call",
        "description": (
            "Hang up the phone call. Use it when the conversation is finished or the person "
            "asks to end the call. The goodbye is said before hanging up."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "goodbye": {
                    "type": "string",
                    "description": "A short goodbye to say before hanging up.",
                }
            },
            "required": ["goodbye"],
            "additionalProperties": False,
        },
    },
}


@dataclass(frozen=True)
class ModelTarget:
    model: str  # what is sent as `model`
    base_url: str
    provider: str | None  # the known prefix, if one was given


def resolve_model(spec: str, base_url: str | None) -> ModelTarget:
    """`provider/model` (or a bare model id) → what to send and where. Raises ValueError."""
    spec = spec.strip()
    if not spec or any(ch.isspace() for ch in spec) or len(spec) > 200:
        raise ValueError(f"{spec!r} is not a model name — write it as provider/model")
    prefix, slash, rest = spec.partition("/")
    provider = prefix.lower() if slash and prefix.lower() in KNOWN_SERVERS else None
    model = rest if provider else spec
    if not model:
        raise ValueError(f"{spec!r} names no model after the provider")
    if base_url:
        return ModelTarget(model, base_url.rstrip("/"), provider)
    if provider:
        return ModelTarget(model, KNOWN_SERVERS[provider], provider)
    if not slash:
        return ModelTarget(model, KNOWN_SERVERS["openai"], "openai")
    raise ValueError(
        f"unknown provider {prefix!r} in {spec!r} — use one of "
        f"{', '.join(sorted(KNOWN_SERVERS))}, or set responder.baseUrl to the server's URL"
    )


def chat_messages(
    system: str, history: list[TranscriptEntry], call: CallRecord
) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}]
    if history:
        messages.append(
            {"role": "system", "content": "Earlier calls with this person, oldest first:"}
        )
        messages += _as_messages(history)
        messages.append({"role": "system", "content": "The current call starts here."})
    messages += _as_messages(call.transcript[-MAX_CALL_LINES:])
    return messages


def _as_messages(entries: Iterable[TranscriptEntry]) -> list[dict[str, str]]:
    """Transcript lines as chat messages; a bot reply spoken sentence by sentence is one."""
    messages: list[dict[str, str]] = []
    for entry in entries:
        if not entry.final or not entry.text.strip():
            continue
        role = "assistant" if entry.speaker == Speaker.BOT else "user"
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += " " + entry.text
        else:
            messages.append({"role": role, "content": entry.text})
    return messages


class OpenAIResponder:
    def __init__(self, config: Config, api_key: str | None) -> None:
        self.config = config
        self.api_key = api_key
        self._clients: dict[str, openai.AsyncOpenAI] = {}

    @classmethod
    def from_config(cls, config: Config) -> OpenAIResponder:
        """Check every model the config may use (per-number overrides too) before any call."""
        key = config.responder.api_key or config.openai_api_key
        models = {"responseModel": config.response_model or DEFAULT_MODEL}
        for number, route in routes(config):
            if route.response_model:
                models[f'numbers["{number}"].responseModel'] = route.response_model
        problems: list[str] = []
        for path, spec in models.items():
            try:
                target = resolve_model(spec, config.responder.base_url)
            except ValueError as exc:
                problems.append(f"{path}: {exc}")
                continue
            if not key and target.provider in NEEDS_KEY and not config.responder.base_url:
                problems.append(
                    f"{path}: {spec!r} needs an API key — set openaiApiKey (or OPENAI_API_KEY)"
                    " or responder.apiKey, or point responder.baseUrl at a local server"
                )
        if problems:
            raise ConfigError(problems)
        responder = cls(config, key)
        default = resolve_model(config.response_model or DEFAULT_MODEL, config.responder.base_url)
        # Built now, not on the first caller's turn.
        responder._client(default.base_url)
        return responder

    def _client(self, base_url: str) -> openai.AsyncOpenAI:
        client = self._clients.get(base_url)
        if client is None:
            # No SDK retries: a retry seconds later is worse on a phone line than the apology.
            client = openai.AsyncOpenAI(
                api_key=self.api_key or NO_KEY,
                base_url=base_url,
                max_retries=0,
                timeout=self.config.response_timeout_ms / 1000,
            )
            self._clients[base_url] = client
        return client

    async def stream(self, call: CallRecord, context: ReplyContext) -> AsyncIterator[str]:
        target = resolve_model(response_model(self.config, call), self.config.responder.base_url)
        messages = chat_messages(instructions(self.config, call), await context.history(), call)
        client = self._client(target.base_url)
        tools: dict[int, list[str]] = {}  # index → [name, arguments so far]
        chunker = SentenceChunker()
        words = SpokenStream()  # the spoken words of the reply, never its JSON or planning
        spoken = False
        try:
            # `client.post` rather than `chat.completions.create`: the SDK's typed-params
            # transform walks every message and costs ~0.14 ms each (14 ms per turn at 100
            # messages); these plain string messages need no transforming.
            stream = await client.post(
                "/chat/completions",
                cast_to=ChatCompletion,
                body={
                    "model": target.model,
                    "messages": messages,
                    "stream": True,
                    "tools": [END_CALL_TOOL],
                },
                options={"timeout": response_timeout_ms(self.config, call) / 1000},
                stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
            )
            try:
                async for chunk in stream:
                    for choice in chunk.choices:
                        delta = choice.delta
                        if delta.content:
                            context.first_token()
                            for sentence in chunker.feed(words.feed(delta.content)):
                                spoken = True
                                yield sentence
                        for call_delta in delta.tool_calls or ():
                            context.first_token()
                            slot = tools.setdefault(call_delta.index, ["", ""])
                            if call_delta.function is not None:
                                slot[0] += call_delta.function.name or ""
                                slot[1] += call_delta.function.arguments or ""
            finally:
                await stream.close()
        except openai.APIStatusError as exc:
            status = exc.status_code
            raise ResponderError(
                f"the model server answered HTTP {status}: {_brief(exc)}"
            ) from None
        except openai.APITimeoutError:
            raise ResponderError(f"the model server at {target.base_url} timed out") from None
        except openai.APIConnectionError:
            raise ResponderError(f"could not reach the model server at {target.base_url}") from None
        except openai.OpenAIError as exc:
            raise ResponderError(f"the model server failed: {_brief(exc)}") from None
        for sentence in chunker.feed(words.finish()):
            spoken = True
            yield sentence
        rest = chunker.flush()
        if rest:
            spoken = True
            yield rest
        for name, arguments in tools.values():
            if name != "end_call":
                log.warning("model called an unknown tool %r; ignored", name[:64])
                continue
            goodbye = _goodbye(arguments)
            if goodbye or not spoken:
                for sentence in split_sentences(goodbye or DEFAULT_GOODBYE):
                    yield sentence
            context.request_end("end_call tool")
            return

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


def _goodbye(arguments: str) -> str | None:
    """The `goodbye` argument, if the model sent a usable one (arguments are model output)."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except (ValueError, RecursionError):
        return None
    value = parsed.get("goodbye") if isinstance(parsed, dict) else None
    said = extract_spoken(value) if isinstance(value, str) else ""
    return said[:MAX_GOODBYE_CHARS] or None


def _brief(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(text)[:300]
