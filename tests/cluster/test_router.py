"""The cluster router (cluster/router.py): any instance takes any webhook or RPC, and what it
takes is applied by the call's owner, whose manager holds the call's turns, timers and lock."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.cluster.stack import Member, cluster_stack
from tests.server.stack import server_config
from tests.store.redis_server import RedisServer
from tests.support import wait_until
from voice_call.models import AnsweredBy, CallEvent, CallState, Direction, EventType
from voice_call.runtime import Runtime


async def test_rpc_commands_sent_to_b_reach_the_manager_of_a(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(
        tmp_path, redis_server, serve=True, mock={"replies": ["first answer", "second answer"]}
    ) as (a, b):
        placed = await a.rpc("voicecall.initiate", {"message": "Hello there"})
        call_id = placed["result"]["callId"]
        record = await a.wait_record(call_id, lambda r: "greeted" in r.metadata)
        assert await a.cluster.ownership.owner(call_id) == a.id
        pid = record.provider_call_id
        assert pid is not None

        spoken = await b.rpc("voicecall.speak", {"callId": call_id, "message": "From B"})
        assert spoken["result"] == {"success": True}
        assert "From B" in a.mock.callees[pid].heard  # A's carrier connection said it
        assert pid not in b.mock.callees

        answered = await b.rpc("voicecall.continue", {"callId": call_id, "message": "Well?"})
        assert answered["result"] == {"success": True, "transcript": "first answer"}

        # A continue turn started through B runs at A; its result is found from either.
        started = await b.rpc("voicecall.continue.start", {"callId": call_id, "message": "And?"})
        turn_id = started["result"]["turnId"]
        assert turn_id.startswith(f"{a.id}-")
        result = await b.rpc("voicecall.continue.result", {"turnId": turn_id, "timeoutMs": 10_000})
        assert result["result"]["status"] == "completed", result
        assert result["result"]["transcript"] == "second answer"
        assert result["result"]["turnId"] == turn_id
        again = await a.rpc("voicecall.continue.result", {"operationId": turn_id})
        assert again["result"]["transcript"] == "second answer"

        dtmf = await b.rpc("voicecall.dtmf", {"callId": call_id, "digits": "42"})
        assert dtmf["result"] == {"success": True}
        assert a.mock.callees[pid].digits == ["42"]

        # A command's error comes back as the owner raised it.
        refused = await b.rpc("voicecall.dtmf", {"callId": call_id, "digits": "x"})
        assert refused["error"]["data"]["code"] == "invalid_request"

        ended = await b.rpc("voicecall.end", {"callId": call_id})
        assert ended["result"] == {"success": True}
        assert a.mock.callees[pid].hung_up
        final = await a.record(call_id)
        assert final.state == CallState.HANGUP_BOT
        await wait_until(lambda: _owner_gone(a, call_id), what="owner key released")
        # Status is answered by any instance from the store; an ended call too.
        status = await b.rpc("voicecall.status", {"callId": call_id})
        assert status["result"]["call"]["state"] == "hangup-bot"
        assert (await b.rpc("voicecall.end", {"callId": call_id}))["result"] == {"success": True}


async def _owner_gone(member: Member, call_id: str) -> bool:
    return await member.cluster.ownership.owner(call_id) is None


async def test_a_webhook_event_delivered_at_b_is_applied_by_a(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """B takes the carrier's webhook; A's waiting continue turn gets the caller's words."""
    async with cluster_stack(tmp_path, redis_server, serve=True, mock={"silent": True}) as (a, b):
        call_id = await a.new_call()  # the mock callee says nothing: the webhook speaks
        turn = asyncio.create_task(a.runtime.manager.continue_call(call_id, "Your name?"))
        record = await a.wait_record(call_id, lambda r: r.state == CallState.LISTENING)
        token = record.metadata.get("turnToken")
        event = {
            "type": "call.speech",
            "callId": call_id,
            "transcript": "It is Ada",
            "isFinal": True,
            "turnToken": token,
            "dedupeKey": "speech-1",
        }
        response = await b.webhook(event)
        assert response.status_code == 200, response.text
        assert response.json()["results"] == ["applied"]
        assert await asyncio.wait_for(turn, 10) == "It is Ada"
        again = await b.webhook({**event, "id": "another-delivery"})  # the same dedupe key
        assert again.json()["results"] == ["duplicate"]


async def test_a_stream_drop_seen_at_b_ends_the_call_at_a(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(tmp_path, redis_server) as (a, b):
        call_id = await a.new_call()
        pid = (await a.record(call_id)).provider_call_id
        await b.runtime.end_after_stream_drop(call_id, CallState.ERROR)
        assert (await a.record(call_id)).state == CallState.ERROR
        assert pid is not None and a.mock.callees[pid].hung_up  # A hung up at the carrier


async def test_an_inbound_call_becomes_the_instance_s_that_accepted_it(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with cluster_stack(tmp_path, redis_server, inboundPolicy="open") as (a, b):
        ring = CallEvent(
            type=EventType.INITIATED,
            provider_call_id="mock-inbound-1",
            direction=Direction.INBOUND,
            from_number="+15555550111",
            to_number="+15555550199",
            dedupe_key="inbound-1",
        )
        assert await b.runtime.handle_event(ring) == "accepted"
        found = await b.runtime.store.find_by_provider_call_id("mock", "mock-inbound-1")
        assert found is not None
        assert await a.cluster.ownership.owner(found.call_id) == b.id
        # Its next event lands at A and is applied by B (the owner).
        answered = CallEvent(type=EventType.ANSWERED, provider_call_id="mock-inbound-1")
        assert await a.runtime.handle_event(answered) == "applied"
        assert (await b.record(found.call_id)).answered_at is not None


def test_an_event_crosses_the_channel_unchanged() -> None:
    event = CallEvent(
        type=EventType.SPEECH,
        call_id="c1",
        provider_call_id="p1",
        from_number="+15555550111",
        to_number="+15555550199",
        direction=Direction.INBOUND,
        transcript="hi there",
        is_final=False,
        confidence=0.91,
        endpointing_ms=123.456,
        answered_by=AnsweredBy.MACHINE,
        timestamp=1_700_000_000.123456,
        dedupe_key="k",
    )
    assert CallEvent.model_validate(json.loads(json.dumps(event.wire()))) == event


async def test_sqlite_keeps_one_process_and_no_cluster(tmp_path: Path) -> None:
    runtime = Runtime(server_config(), tmp_path / "home")
    assert runtime.cluster is None and runtime.router is None
    assert runtime.manager.claim_new is None and runtime.manager.claim is None
    assert runtime.manager.owns is None
    await runtime.start()
    try:
        placed = await runtime.dispatch(
            "voicecall.initiate", {"message": "Hi", "to": "+15555550123"}
        )
        status = await runtime.dispatch("voicecall.status", {"callId": placed["callId"]})
        assert status["found"] is True
        call_id = placed["callId"]
        await wait_until(lambda: _answered(runtime, call_id))
        started = await runtime.dispatch(
            "voicecall.continue.start", {"callId": call_id, "message": "Hm?"}
        )
        assert "-" not in started["turnId"]  # a bare id: no instance to name
    finally:
        await runtime.stop()


async def _answered(runtime: Runtime, call_id: str) -> bool:
    record = await runtime.store.get(call_id)
    return record is not None and record.answered_at is not None
