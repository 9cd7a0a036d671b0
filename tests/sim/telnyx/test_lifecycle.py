"""Telnyx emulator lifecycles against docs/carriers.md §4 "Telnyx": order and payloads."""

from __future__ import annotations

import base64

import pytest

from tests.sim.telnyx.app import (
    API_KEY,
    APP_NUMBER,
    CALLEE,
    CONNECTION_ID,
    Event,
    TelnyxApp,
    running,
)
from voice_call.sim.callee import CalleeScript
from voice_call.sim.telnyx import TelnyxEmulator

SCALE = 0.05
STATE = base64.b64encode(b"call-42").decode()


def emulator(script: CalleeScript, **kwargs: object) -> TelnyxEmulator:
    return TelnyxEmulator(API_KEY, script=script, time_scale=SCALE, **kwargs)  # type: ignore[arg-type]


async def converse(app: TelnyxApp, data: Event) -> None:
    """Greet on answer, listen after speaking, hang up on the callee's final words."""
    call_id = data["payload"]["call_control_id"]
    kind = data["event_type"]
    if kind == "call.answered":
        await app.command(call_id, "speak", payload="Hello from the bot", voice="female")
    elif kind == "call.speak.ended":
        await app.command(call_id, "transcription_start", transcription_engine="B")
    elif kind == "call.transcription" and data["payload"]["transcription_data"]["is_final"]:
        await app.command(call_id, "hangup")


async def test_outbound_answered_follows_the_documented_order() -> None:
    script = CalleeScript(answer_delay_ms=300, replies=("A table for two please",))
    emu = emulator(script)
    async with running(emu, converse) as app:
        response = await app.dial(client_state=STATE, timeout_secs=30)
        assert response.status_code == 200
        dialled = response.json()["data"]
        assert dialled["is_alive"] is False
        assert dialled["record_type"] == "call"
        assert dialled["client_state"] == STATE
        call_id = dialled["call_control_id"]
        assert call_id.startswith("v3:")

        call = await emu.wait_ended(call_id)
        assert app.types(call_id) == [
            "call.initiated",
            "call.answered",
            "call.speak.started",
            "call.speak.ended",
            "call.transcription",
            "call.hangup",
        ]
        initiated = app.payload("call.initiated")
        assert initiated["direction"] == "outgoing"
        assert initiated["state"] == "bridging"
        assert (initiated["from"], initiated["to"]) == (APP_NUMBER, CALLEE)
        assert initiated["connection_id"] == CONNECTION_ID
        assert initiated["call_leg_id"] == dialled["call_leg_id"]
        assert initiated["call_session_id"] == dialled["call_session_id"]
        for event in app.of(call_id):
            assert event["data"]["record_type"] == "event"
            assert event["data"]["occurred_at"].endswith("Z")
            assert event["data"]["payload"]["client_state"] == STATE
            assert event["meta"]["attempt"] == 1
        assert app.payload("call.answered")["state"] == "answered"
        assert app.payload("call.speak.ended")["status"] == "completed"
        transcript = app.payload("call.transcription")["transcription_data"]
        assert transcript["transcript"] == "A table for two please"
        assert transcript["is_final"] is True
        assert transcript["transcription_track"] == "inbound"
        assert 0 < transcript["confidence"] <= 1
        hangup = app.payload("call.hangup")
        assert hangup["hangup_cause"] == "normal_clearing"
        assert hangup["hangup_source"] == "caller"
        assert hangup["state"] == "hangup"

        assert call.callee.heard == ["Hello from the bot"]
        assert call.callee.said == ["A table for two please"]
        assert (call.status, call.hangup_cause) == ("hangup", "normal_clearing")
        assert [h.kind for h in emu.webhooks] == app.types(call_id)
        assert all(h.status_code == 200 for h in emu.webhooks)

        fetched = (await app.api.get(f"/v2/calls/{call_id}")).json()["data"]  # type: ignore[union-attr]
        assert fetched["is_alive"] is False
        assert fetched["call_control_id"] == call_id
        assert "end_time" in fetched


@pytest.mark.parametrize(
    ("outcome", "cause", "sip"),
    [("busy", "user_busy", "486"), ("no-answer", "timeout", "487"), ("failed", "not_found", "404")],
)
async def test_outbound_not_answered(outcome: str, cause: str, sip: str) -> None:
    emu = emulator(CalleeScript(outcome=outcome, answer_delay_ms=100))
    async with running(emu) as app:
        call_id = (await app.dial(timeout_secs=5)).json()["data"]["call_control_id"]
        call = await emu.wait_ended(call_id)
        assert app.types(call_id) == ["call.initiated", "call.hangup"]
        hangup = app.payload("call.hangup")
        assert (hangup["hangup_cause"], hangup["sip_hangup_cause"]) == (cause, sip)
        assert call.hangup_cause == cause
        assert call.answered_at is None


async def test_answer_after_timeout_is_a_timeout() -> None:
    emu = emulator(CalleeScript(answer_delay_ms=10_000))
    async with running(emu) as app:
        call_id = (await app.dial(timeout_secs=5)).json()["data"]["call_control_id"]
        await emu.wait_ended(call_id)
        assert app.payload("call.hangup")["hangup_cause"] == "timeout"


async def answer_then_greet(app: TelnyxApp, data: Event) -> None:
    call_id = data["payload"]["call_control_id"]
    kind = data["event_type"]
    if kind == "call.initiated" and data["payload"]["direction"] == "incoming":
        response = await app.command(call_id, "answer", client_state=STATE)
        assert response.json() == {"data": {"result": "ok"}}
    elif kind == "call.answered":
        await app.command(call_id, "speak", payload="Thanks for calling", voice="female")
    elif kind == "call.speak.ended":
        await app.command(call_id, "hangup")


async def test_inbound_answered_explicitly() -> None:
    emu = emulator(CalleeScript())
    async with running(emu, answer_then_greet) as app:
        call = await emu.place_inbound("+15557770000", APP_NUMBER)
        await emu.wait_ended(call.id)
        assert app.types(call.id) == [
            "call.initiated",
            "call.answered",
            "call.speak.started",
            "call.speak.ended",
            "call.hangup",
        ]
        initiated = app.payload("call.initiated")
        assert (initiated["direction"], initiated["state"]) == ("incoming", "parked")
        assert (initiated["from"], initiated["to"]) == ("+15557770000", APP_NUMBER)
        assert initiated["client_state"] is None
        assert app.payload("call.answered")["client_state"] == STATE
        hangup = app.payload("call.hangup")
        assert (hangup["hangup_cause"], hangup["hangup_source"]) == ("normal_clearing", "callee")
        assert call.direction == "inbound"
        assert call.callee.heard == ["Thanks for calling"]


async def test_inbound_never_answered_ends_with_originator_cancel() -> None:
    emu = emulator(CalleeScript(), inbound_ring_timeout_s=4)
    async with running(emu) as app:
        call = await emu.place_inbound("+15557770000", APP_NUMBER)
        await emu.wait_ended(call.id)
        assert app.types(call.id) == ["call.initiated", "call.hangup"]
        hangup = app.payload("call.hangup")
        assert (hangup["hangup_cause"], hangup["hangup_source"]) == ("originator_cancel", "caller")


async def test_inbound_rejected() -> None:
    async def reject(app: TelnyxApp, data: Event) -> None:
        if data["event_type"] == "call.initiated":
            await app.command(data["payload"]["call_control_id"], "reject", cause="USER_BUSY")

    emu = emulator(CalleeScript())
    async with running(emu, reject) as app:
        call = await emu.place_inbound("+15557770000", APP_NUMBER)
        await emu.wait_ended(call.id)
        assert app.types(call.id) == ["call.initiated", "call.hangup"]
        assert app.payload("call.hangup")["hangup_cause"] == "user_busy"


async def test_callee_hangs_up_after_its_turns() -> None:
    async def keep_talking(app: TelnyxApp, data: Event) -> None:
        call_id = data["payload"]["call_control_id"]
        if data["event_type"] == "call.answered":
            await app.command(call_id, "speak", payload="How can I help?", voice="female")
            await app.command(call_id, "transcription_start")
        elif data["event_type"] == "call.transcription":
            await app.command(call_id, "speak", payload="Anything else?", voice="female")

    script = CalleeScript(replies=("Book a table",), hangup_after_turns=1)
    emu = emulator(script)
    async with running(emu, keep_talking) as app:
        call_id = (await app.dial()).json()["data"]["call_control_id"]
        call = await emu.wait_ended(call_id)
        assert app.types(call_id) == [
            "call.initiated",
            "call.answered",
            "call.speak.started",
            "call.speak.ended",
            "call.transcription",
            "call.speak.started",
            "call.speak.ended",
            "call.hangup",
        ]
        hangup = app.payload("call.hangup")
        assert (hangup["hangup_cause"], hangup["hangup_source"]) == ("normal_clearing", "callee")
        assert call.callee.hung_up
        assert call.callee.heard == ["How can I help?", "Anything else?"]


async def test_app_hangs_up_while_ringing() -> None:
    emu = emulator(CalleeScript(answer_delay_ms=5_000))
    async with running(emu) as app:
        call_id = (await app.dial()).json()["data"]["call_control_id"]
        await app.wait_for("call.initiated")
        assert (await app.command(call_id, "hangup")).status_code == 200
        await emu.wait_ended(call_id)
        assert app.types(call_id) == ["call.initiated", "call.hangup"]
        assert app.payload("call.hangup")["hangup_cause"] == "originator_cancel"
