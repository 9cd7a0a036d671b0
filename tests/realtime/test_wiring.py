"""How realtime voice is wired into the service, seen from outside: the model session warms
while the phone rings (and is closed when nobody answers), custom tools are answered by POSTing
to the hook, and a tool that fails goes back to the model as an error it can explain."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.providers.telnyx.stack import CALLEE, telnyx_stack
from tests.realtime.e2e import QUESTION, lines, realtime_config
from tests.realtime.test_e2e_twilio import realtime_twilio
from tests.support import wait_until
from voice_call.asgi_server import BackgroundServer
from voice_call.models import CallState
from voice_call.sim.callee import CalleeScript
from voice_call.sim.openai import FakeOpenAI
from voice_call.sim.openai.conversation import ConversationScript, ToolCall

LOOKUP = {
    "type": "function",
    "name": "lookup_order",
    "description": "Find an order by its number",
    "parameters": {
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "required": ["id"],
    },
}


class Hook:
    """The user's hook: answers tool calls with `answer`, records what it was sent."""

    def __init__(self, answer: Response) -> None:
        self.answer = answer
        self.received: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.app = Starlette(routes=[Route("/hook", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        self.received.append((await request.json(), dict(request.headers)))
        return self.answer


@asynccontextmanager
async def hooked(answer: Response) -> AsyncIterator[tuple[Hook, dict[str, Any]]]:
    hook = Hook(answer)
    async with BackgroundServer(hook.app, lifespan="off") as server:
        config = {
            "responder": {
                "provider": "hook",
                "url": server.url + "/hook",
                "headers": {"Authorization": "Bearer hook-secret"},
            },
            "realtime": {"tools": [LOOKUP]},
        }
        yield hook, config


def spoken(output: str) -> str:
    """What the fake model says once the tool's output came back."""
    result = json.loads(output)
    if "error" in result:
        return "Sorry, I could not look that up."
    return f"Your order is {result['status']}."


async def test_a_custom_tool_is_answered_by_the_hook(tmp_path: Path) -> None:
    lookup = ToolCall("lookup_order", {"id": "42"}, then=spoken)
    async with (
        hooked(JSONResponse({"status": "shipped"})) as (hook, config),
        realtime_twilio(tmp_path, [lookup], **config) as rt,
    ):
        call_id, _ = await rt.dial()
        await rt.stack.wait_record(
            call_id, lambda r: ("bot", "Your order is shipped.") in lines(r), timeout=20
        )
        [(body, headers)] = hook.received
        assert body == {"callId": call_id, "tool": "lookup_order", "arguments": {"id": "42"}}
        assert headers["authorization"] == "Bearer hook-secret"
        # the model was offered it beside the built-ins
        update = rt.fake.conversations[0].events("session.update")[0]
        names = {tool["name"] for tool in update["session"]["tools"]}
        assert names == {"end_call", "send_dtmf", "consult", "lookup_order"}
        await rt.stack.call("voicecall.end", callId=call_id)
        await rt.stack.wait_ended(call_id)


async def test_a_failing_hook_goes_back_to_the_model_as_an_error(tmp_path: Path) -> None:
    lookup = ToolCall("lookup_order", {"id": "42"}, then=spoken)
    async with (
        hooked(Response("boom", status_code=500)) as (_hook, config),
        realtime_twilio(tmp_path, [lookup], **config) as rt,
    ):
        call_id, _ = await rt.dial()
        await rt.stack.wait_record(
            call_id, lambda r: ("bot", "Sorry, I could not look that up.") in lines(r), timeout=20
        )
        [output] = rt.fake.conversations[0].events("conversation.item.create")
        assert json.loads(output["item"]["output"]) == {
            "error": "the tool's hook answered HTTP 500"
        }
        record = await rt.stack.record(call_id)
        assert not record.terminal  # the call goes on
        await rt.stack.call("voicecall.end", callId=call_id)
        await rt.stack.wait_ended(call_id)


async def test_toolpolicy_none_offers_no_consult(tmp_path: Path) -> None:
    async with realtime_twilio(tmp_path, [], realtime={"toolPolicy": "none"}) as rt:
        call_id, _ = await rt.dial()
        update = rt.fake.conversations[0].events("session.update")[0]
        names = {tool["name"] for tool in update["session"]["tools"]}
        assert names == {"end_call", "send_dtmf"}
        assert "consult" not in update["session"]["instructions"]
        await rt.stack.call("voicecall.end", callId=call_id)
        await rt.stack.wait_ended(call_id)


async def test_the_model_warms_while_the_phone_rings_and_closes_when_nobody_answers(
    tmp_path: Path,
) -> None:
    # Telnyx dials with the stream URL: the model session opens then, before any answer.
    script = CalleeScript(outcome="no-answer")
    async with (
        FakeOpenAI("sk-test", conversation=ConversationScript()) as fake,
        telnyx_stack(tmp_path, script=script, time_scale=1.0, **realtime_config(fake)) as stack,
    ):
        started = await stack.call(
            "voicecall.initiate",
            to=CALLEE,
            message=QUESTION,
            mode="conversation",
        )
        call_id = str(started["callId"])
        await wait_until(lambda: fake.conversations, timeout=10, what="the model session")
        record = await stack.record(call_id)
        assert record.answered_at is None  # it opened while the phone rang
        await stack.call("voicecall.end", callId=call_id)  # nobody answered: give up
        ended = await stack.wait_ended(call_id)
        assert ended.end_reason == CallState.HANGUP_BOT
        await wait_until(lambda: fake.conversations[0].closed, timeout=10, what="the close")
