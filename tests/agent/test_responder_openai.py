"""The `openai` responder: model resolution, prompt and memory, streaming, the end_call tool.

Streaming runs against FakeOpenAI on a loopback port; tool calls (which the fake does not
stream) against a small chat server in this file that streams `delta.tool_calls` the way the
real API does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from voice_call.agent.memory import session_history
from voice_call.agent.prompt import response_model, system_prompt
from voice_call.agent.responders.base import ReplyContext, ResponderError
from voice_call.agent.responders.echo import EchoResponder
from voice_call.agent.responders.factory import build_responder, responder_name
from voice_call.agent.responders.openai import (
    OpenAIResponder,
    chat_messages,
    resolve_model,
)
from voice_call.agent.spoken import CONTRACT
from voice_call.asgi_server import BackgroundServer
from voice_call.cli.setup_checks import check_responder
from voice_call.config import Config, ConfigError, parse_config
from voice_call.models import CallRecord, Direction, Mode, Speaker, TranscriptEntry
from voice_call.sim.openai import ChatScript, FakeOpenAI
from voice_call.store.sqlite import SqliteStore


def call_record(
    *lines: tuple[Speaker, str],
    to: str = "+15555550123",
    direction: Direction = Direction.OUTBOUND,
    started: float = 1000.0,
    **extra: Any,
) -> CallRecord:
    return CallRecord(
        provider="mock",
        direction=direction,
        mode=Mode.CONVERSATION,
        from_number="+15550000000" if direction == Direction.OUTBOUND else to,
        to_number=to if direction == Direction.OUTBOUND else "+15550000000",
        started_at=started,
        transcript=[
            TranscriptEntry(at=started + i, speaker=who, text=text)
            for i, (who, text) in enumerate(lines)
        ],
        **extra,
    )


def config(base_url: str | None = None, **extra: Any) -> Config:
    responder: dict[str, Any] = {"provider": "openai", "apiKey": "sk-test"}
    if base_url:
        responder["baseUrl"] = base_url
    return parse_config({"responder": responder, **extra}, env={})


async def collect(stream: AsyncIterator[str]) -> list[str]:
    return [sentence async for sentence in stream]


# --- model and prompt ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "base_url", "expected"),
    [
        ("openai/gpt-4o-mini", None, ("gpt-4o-mini", "https://api.openai.com/v1", "openai")),
        ("gpt-4o", None, ("gpt-4o", "https://api.openai.com/v1", "openai")),
        ("ollama/llama3.2", None, ("llama3.2", "http://127.0.0.1:11434/v1", "ollama")),
        ("ollama/llama3.2", "http://gpu:11434/v1/", ("llama3.2", "http://gpu:11434/v1", "ollama")),
        # an org/model id for vLLM is sent whole
        (
            "meta-llama/Llama-3.1-8B",
            "http://vllm:8000/v1",
            ("meta-llama/Llama-3.1-8B", "http://vllm:8000/v1", None),
        ),
    ],
)
def test_resolve_model(spec: str, base_url: str | None, expected: tuple[Any, ...]) -> None:
    target = resolve_model(spec, base_url)
    assert (target.model, target.base_url, target.provider) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("acme/model", "unknown provider 'acme'"),
        ("openai/", "names no model"),
        ("two words", "not a model name"),
        ("", "not a model name"),
    ],
)
def test_resolve_model_rejects(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_model(spec, None)


def test_from_config_needs_a_key_for_hosted_models() -> None:
    no_key = parse_config({"responder": {"provider": "openai"}}, env={})
    with pytest.raises(ConfigError) as caught:
        build_responder(no_key)
    assert caught.value.errors == [
        "responseModel: 'openai/gpt-4o-mini' needs an API key — set openaiApiKey (or "
        "OPENAI_API_KEY) or responder.apiKey, or point responder.baseUrl at a local server"
    ]
    local = parse_config(
        {"responder": {"provider": "openai"}, "responseModel": "ollama/llama3.2"}, env={}
    )
    assert isinstance(build_responder(local), OpenAIResponder)
    from_env = parse_config({"responder": {"provider": "openai"}}, env={"OPENAI_API_KEY": "sk-x"})
    responder = build_responder(from_env)
    assert isinstance(responder, OpenAIResponder) and responder.api_key == "sk-x"
    bad_route = {
        "responder": {"provider": "openai", "apiKey": "k"},
        "numbers": {"+15555550111": {"responseModel": "acme/x"}},
    }
    with pytest.raises(ConfigError, match=r'numbers\["\+15555550111"\]\.responseModel: unknown'):
        build_responder(parse_config(bad_route, env={}))


@pytest.mark.parametrize(
    ("data", "chosen"),
    [
        ({"responseModel": "ollama/llama3.2"}, "openai"),  # the seed's way: no responder block
        ({"responseModel": "ollama/llama3.2", "responder": {"apologyText": "Sorry?"}}, "openai"),
        ({"responseModel": "ollama/llama3.2", "responder": {"provider": "none"}}, "none"),
        ({"responseModel": "ollama/llama3.2", "responder": {"provider": "echo"}}, "echo"),
        ({}, "none"),
        ({"responder": {"baseUrl": "http://127.0.0.1:9/v1"}}, "none"),  # no model: no choice
    ],
)
async def test_a_response_model_alone_chooses_the_openai_responder(
    data: dict[str, Any], chosen: str
) -> None:
    cfg = parse_config(data, env={})
    assert responder_name(cfg) == chosen
    built = build_responder(cfg)
    kind = {"openai": OpenAIResponder, "echo": EchoResponder, "none": type(None)}[chosen]
    assert isinstance(built, kind)
    check = await check_responder(cfg)  # `voicecall setup` agrees
    assert check.status == "ok" and check.message.startswith(chosen)
    if isinstance(built, OpenAIResponder):
        await built.aclose()


def test_a_response_model_alone_without_a_key_is_a_clear_error() -> None:
    cfg = parse_config({"responseModel": "openai/gpt-4o-mini"}, env={})
    with pytest.raises(ConfigError, match="responseModel: 'openai/gpt-4o-mini' needs an API key"):
        build_responder(cfg)


def test_prompt_knows_the_number_and_routes_override_it() -> None:
    cfg = config(
        numbers={
            "+15550000000": {"responseModel": "ollama/qwen", "responseSystemPrompt": "Be a pirate."}
        }
    )
    outbound = call_record(to="+15555550123")
    assert "+15555550123" in system_prompt(cfg, outbound)
    assert response_model(cfg, outbound) == "openai/gpt-4o-mini"
    inbound = call_record(
        to="+15555550199", direction=Direction.INBOUND, metadata={"numberRouteKey": "+15550000000"}
    )
    assert system_prompt(cfg, inbound) == "Be a pirate."
    assert response_model(cfg, inbound) == "ollama/qwen"


def test_messages_merge_spoken_sentences_and_mark_earlier_calls() -> None:
    call = call_record(
        (Speaker.BOT, "Hello."),
        (Speaker.USER, "Hi, is Sam there?"),
        (Speaker.BOT, "Sam is out."),
        (Speaker.BOT, "Can I take a message?"),
    )
    earlier = [TranscriptEntry(at=1, speaker=Speaker.USER, text="I called yesterday")]
    messages = chat_messages("SYSTEM", earlier, call)
    assert messages == [
        {"role": "system", "content": "SYSTEM"},
        {"role": "system", "content": "Earlier calls with this person, oldest first:"},
        {"role": "user", "content": "I called yesterday"},
        {"role": "system", "content": "The current call starts here."},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Hi, is Sam there?"},
        {"role": "assistant", "content": "Sam is out. Can I take a message?"},
    ]


# --- memory (sessionScope) ---------------------------------------------------------------------


async def test_session_history_per_scope(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "calls.db")
    await store.open()
    try:
        older_same = call_record((Speaker.USER, "same number, earlier"), started=100)
        older_other = call_record((Speaker.USER, "other number"), to="+15555550999", started=200)
        # an inbound call from the same person counts as the same phone
        inbound_same = call_record(
            (Speaker.USER, "called us back"),
            to="+1 555 555 0123",
            direction=Direction.INBOUND,
            started=300,
        )
        later = call_record((Speaker.USER, "in the future"), started=5000)
        for rec in (older_same, older_other, inbound_same, later):
            await store.save(rec)
        current = call_record((Speaker.USER, "now"), started=1000)
        await store.save(current)

        async def texts(scope: str, limit: int = 40) -> list[str]:
            return [e.text for e in await session_history(store, current, scope, limit)]

        assert await texts("per-phone") == ["same number, earlier", "called us back"]
        assert await texts("main") == ["same number, earlier", "other number", "called us back"]
        assert await texts("per-call") == []
        assert await texts("per-phone", limit=1) == ["called us back"]
        assert await texts("per-phone", limit=0) == []
    finally:
        await store.close()


# --- streaming against FakeOpenAI ---------------------------------------------------------------


async def test_streams_sentences_and_notes_the_first_token() -> None:
    script = ChatScript(reply="Hello there. How can I help?", first_token_ms=0, per_token_ms=0)
    async with FakeOpenAI("sk-test", chat=script) as fake:
        responder = build_responder(config(fake.url, responseModel="openai/gpt-test"))
        assert isinstance(responder, OpenAIResponder)
        context = ReplyContext()
        call = call_record((Speaker.USER, "hi"))
        out = await collect(responder.stream(call, context))
        await responder.aclose()
    assert out == ["Hello there.", "How can I help?"]
    assert context.first_token_at is not None and not context.end_requested
    body = fake.requests[-1].body
    assert body["model"] == "gpt-test" and body["stream"] is True
    assert body["tools"][0]["function"]["name"] == "end_call"
    assert body["messages"][-1] == {"role": "user", "content": "hi"}


async def test_history_reaches_the_model() -> None:
    script = ChatScript(reply="Welcome back.", first_token_ms=0, per_token_ms=0)
    async with FakeOpenAI("sk-test", chat=script) as fake:
        responder = build_responder(config(fake.url))
        assert responder is not None

        async def history() -> list[TranscriptEntry]:
            return [TranscriptEntry(at=1, speaker=Speaker.USER, text="my name is Ada")]

        await collect(responder.stream(call_record((Speaker.USER, "hi")), ReplyContext(history)))
    contents = [m["content"] for m in fake.requests[-1].body["messages"]]
    assert "my name is Ada" in contents


@pytest.mark.parametrize(
    ("key", "message"),
    [("sk-wrong", "HTTP 401"), ("sk-test", "could not reach")],
)
async def test_service_errors_become_responder_errors(key: str, message: str) -> None:
    async with FakeOpenAI("sk-test", chat=ChatScript(first_token_ms=0)) as fake:
        url = fake.url if key == "sk-wrong" else "http://127.0.0.1:9/v1"
        cfg = parse_config(
            {"responder": {"provider": "openai", "apiKey": key, "baseUrl": url}}, env={}
        )
        responder = build_responder(cfg)
        assert responder is not None
        with pytest.raises(ResponderError, match=message):
            await collect(responder.stream(call_record((Speaker.USER, "hi")), ReplyContext()))


# --- the end_call tool --------------------------------------------------------------------------


def tool_chat_app(content: list[str], tool_args: list[str]) -> Starlette:
    """Streams `content` deltas, then an end_call tool call whose arguments arrive in pieces."""

    async def completions(request: Request) -> StreamingResponse:
        await request.json()

        def event(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [choice],
            }
            return f"data: {json.dumps(chunk)}\n\n"

        async def body() -> AsyncIterator[str]:
            yield event({"role": "assistant", "content": ""})
            for piece in content:
                yield event({"content": piece})
            if tool_args:
                head = {"index": 0, "id": "call_1", "type": "function"}
                yield event(
                    {"tool_calls": [{**head, "function": {"name": "end_call", "arguments": ""}}]}
                )
                for piece in tool_args:
                    yield event({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            yield event({}, "tool_calls" if tool_args else "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


@pytest.mark.parametrize(
    ("content", "tool_args", "said"),
    [
        ([], ['{"good', 'bye": "Thanks, bye!"}'], ["Thanks, bye!"]),
        (
            ["Glad I could help."],
            ['{"goodbye": "Take care."}'],
            ["Glad I could help.", "Take care."],
        ),
        (["All done."], ["{}"], ["All done."]),  # no goodbye: what was said suffices
        ([], ["not json"], ["Goodbye!"]),  # nothing said at all: a default goodbye
    ],
)
async def test_end_call_tool_says_goodbye_and_requests_the_hangup(
    content: list[str], tool_args: list[str], said: list[str]
) -> None:
    async with BackgroundServer(tool_chat_app(content, tool_args), lifespan="off") as server:
        responder = build_responder(config(server.url + "/v1"))
        assert responder is not None
        context = ReplyContext()
        out = await collect(responder.stream(call_record((Speaker.USER, "bye")), context))
    assert out == said
    assert context.end_requested and context.end_reason == "end_call tool"


async def test_plain_reply_does_not_end_the_call() -> None:
    async with BackgroundServer(tool_chat_app(["Sure", "."], []), lifespan="off") as server:
        responder = build_responder(config(server.url + "/v1"))
        assert responder is not None
        context = ReplyContext()
        assert await collect(responder.stream(call_record(), context)) == ["Sure."]
    assert not context.end_requested


# --- the spoken-output contract -----------------------------------------------------------------


async def test_the_system_message_asks_for_the_contract() -> None:
    script = ChatScript(reply="Hi.", first_token_ms=0, per_token_ms=0)
    async with FakeOpenAI("sk-test", chat=script) as fake:
        responder = build_responder(config(fake.url, responseSystemPrompt="Be a pirate."))
        assert responder is not None
        await collect(responder.stream(call_record((Speaker.USER, "hi")), ReplyContext()))
    system = fake.requests[-1].body["messages"][0]["content"]
    assert system == "Be a pirate.\n\n" + CONTRACT


@pytest.mark.parametrize(
    ("content", "tool_args", "said"),
    [
        # the JSON cut anywhere, escapes split across pieces
        (
            ['{"spo', 'ken"', ': "Sure', ". It\\u0027s thr", "ee.\\", 'nBye."', "}"],
            [],
            ["Sure.", "It's three.", "Bye."],
        ),
        (["Thinking", "...\n", "Sure, three."], [], ["Sure, three."]),
        # a goodbye written as the contract asks is said as its words
        ([], ['{"goodbye": "{\\"spoken\\": \\"Take care.\\"}"}'], ["Take care."]),
    ],
)
async def test_streamed_json_and_planning_are_never_said(
    content: list[str], tool_args: list[str], said: list[str]
) -> None:
    async with BackgroundServer(tool_chat_app(content, tool_args), lifespan="off") as server:
        responder = build_responder(config(server.url + "/v1"))
        assert responder is not None
        context = ReplyContext()
        assert await collect(responder.stream(call_record((Speaker.USER, "hi")), context)) == said
