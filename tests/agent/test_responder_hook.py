"""The `hook` responder against a hook served on a loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from voice_call.agent.responders.base import ReplyContext, ResponderError
from voice_call.agent.responders.factory import build_responder
from voice_call.agent.responders.hook import HookResponder, parse_answer
from voice_call.asgi_server import BackgroundServer
from voice_call.config import parse_config
from voice_call.models import CallRecord, Direction, Mode, Speaker, TranscriptEntry


def call_record() -> CallRecord:
    return CallRecord(
        call_id="call-1",
        provider="mock",
        direction=Direction.INBOUND,
        mode=Mode.CONVERSATION,
        from_number="+15555550100",
        to_number="+15555550111",
        started_at=100.0,
        transcript=[
            TranscriptEntry(at=100, speaker=Speaker.BOT, text="Hello!"),
            TranscriptEntry(at=101, speaker=Speaker.USER, text="Is the shop open?"),
        ],
    )


class Hook:
    """A hook whose answer each test picks; it records what it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.answer: Response | None = None
        self.app = Starlette(routes=[Route("/turn", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        self.received.append((await request.json(), dict(request.headers)))
        assert self.answer is not None
        return self.answer


async def run(hook: Hook, answer: Response, **responder: Any) -> tuple[list[str], ReplyContext]:
    hook.answer = answer
    async with BackgroundServer(hook.app, lifespan="off") as server:
        cfg = parse_config(
            {"responder": {"provider": "hook", "url": server.url + "/turn", **responder}},
            env={},
        )
        built = build_responder(cfg)
        assert isinstance(built, HookResponder)
        context = ReplyContext()
        try:
            out = [s async for s in built.stream(call_record(), context)]
        finally:
            await built.aclose()
    return out, context


async def test_posts_the_turn_and_speaks_a_json_reply() -> None:
    hook = Hook()
    answer = JSONResponse({"reply": "Yes, until six. Anything else?"})
    out, context = await run(hook, answer, headers={"Authorization": "Bearer hook-secret"})
    assert out == ["Yes, until six.", "Anything else?"]
    assert not context.end_requested and context.first_token_at is not None
    [(payload, headers)] = hook.received
    assert payload["callId"] == "call-1" and payload["text"] == "Is the shop open?"
    assert payload["from"] == "+15555550100" and payload["direction"] == "inbound"
    assert [line["speaker"] for line in payload["transcript"]] == ["bot", "user"]
    assert payload["history"] == []
    assert payload["agentId"] == "main" and payload["sessionKey"] is None
    assert headers["authorization"] == "Bearer hook-secret"


async def test_the_payload_names_the_calls_agent_and_session() -> None:
    hook = Hook()
    hook.answer = JSONResponse({"reply": "Hi."})
    async with BackgroundServer(hook.app, lifespan="off") as server:
        cfg = parse_config({"responder": {"provider": "hook", "url": server.url + "/turn"}}, env={})
        responder = build_responder(cfg)
        assert responder is not None
        call = call_record().model_copy(update={"agent_id": "sales", "session_key": "order-42"})
        assert [s async for s in responder.stream(call, ReplyContext())] == ["Hi."]
    [(payload, _)] = hook.received
    assert (payload["agentId"], payload["sessionKey"]) == ("sales", "order-42")


@pytest.mark.parametrize(
    "reply",
    [
        '{"spoken": "Yes, until six."}',
        '```json\n{"spoken": "Yes, until six."}\n```',
        "The user is asking about hours.\nYes, until six.",
        "<think>hours</think>Yes, until six.",
    ],
)
async def test_only_the_spoken_words_of_a_json_reply_are_said(reply: str) -> None:
    out, _ = await run(Hook(), JSONResponse({"reply": reply}))
    assert out == ["Yes, until six."]


async def test_only_the_spoken_words_of_a_text_reply_are_said() -> None:
    async def body() -> AsyncIterator[bytes]:
        for piece in (b"Thinking", b"...\n", b'{"spo', b'ken": "Yes, un', b'til six."}'):
            yield piece

    hook = Hook()
    out, _ = await run(hook, StreamingResponse(body(), media_type="text/plain"))
    assert out == ["Yes, until six."]


async def test_end_call_and_a_quiet_reply() -> None:
    out, context = await run(Hook(), JSONResponse({"reply": "Bye now.", "endCall": True}))
    assert out == ["Bye now."] and context.end_requested
    out, context = await run(Hook(), JSONResponse({"reply": None}))
    assert out == [] and not context.end_requested


async def test_a_text_reply_is_spoken_as_it_streams() -> None:
    release = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"First sentence. Sec"
        await release.wait()
        yield b"ond sentence."

    hook = Hook()
    hook.answer = StreamingResponse(body(), media_type="text/plain")
    async with BackgroundServer(hook.app, lifespan="off") as server:
        cfg = parse_config({"responder": {"provider": "hook", "url": server.url + "/turn"}}, env={})
        responder = build_responder(cfg)
        assert responder is not None
        stream = responder.stream(call_record(), ReplyContext())
        assert await anext(stream) == "First sentence."  # before the hook finished
        release.set()
        assert [s async for s in stream] == ["Second sentence."]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (Response("boom", 500), "HTTP 500"),
        (Response("{nope", 200, media_type="application/json"), "does not parse"),
        (JSONResponse(["a list"]), "JSON object"),
        (JSONResponse({"reply": 42}), "invalid at reply"),
        (JSONResponse({"reply": "x", "endCall": "yes"}), "invalid at endCall"),
        (JSONResponse({"reply": "x" * 5000}), "invalid at reply"),
    ],
)
async def test_bad_answers_are_responder_errors(answer: Response, message: str) -> None:
    with pytest.raises(ResponderError, match=message):
        await run(Hook(), answer)


async def test_unreachable_hook() -> None:
    cfg = parse_config(
        {"responder": {"provider": "hook", "url": "http://127.0.0.1:9/turn"}}, env={}
    )
    responder = build_responder(cfg)
    assert responder is not None
    with pytest.raises(ResponderError, match="could not reach the hook"):
        [s async for s in responder.stream(call_record(), ReplyContext())]


@given(st.binary(max_size=200))
def test_parse_answer_never_crashes(body: bytes) -> None:
    try:
        answer = parse_answer(body)
    except ResponderError:
        return
    assert answer.reply is None or isinstance(answer.reply, str)
    assert isinstance(answer.end_call, bool)


JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=50), st.text(min_size=4001)
)


@given(st.dictionaries(st.sampled_from(["reply", "endCall", "other"]), JSON_VALUES))
def test_parse_answer_validates_every_shape(data: dict[str, Any]) -> None:
    import json

    reply, end_call = data.get("reply"), data.get("endCall", False)
    valid = (reply is None or (isinstance(reply, str) and len(reply) <= 4000)) and isinstance(
        end_call, bool
    )
    try:
        answer = parse_answer(json.dumps(data).encode())
    except ResponderError:
        assert not valid
        return
    assert valid and answer.reply == reply and answer.end_call is end_call
