"""Telnyx emulator commands: gather, playback, DTMF, transcription, client_state, command_id."""

from __future__ import annotations

import base64
import io
import wave

from tests.sim.telnyx.app import (
    API_KEY,
    TEST_PUBLIC_KEY,
    TEST_SECRET_KEY,
    Event,
    TelnyxApp,
    running,
)
from voice_call.sim.callee import CalleeScript
from voice_call.sim.telnyx import TelnyxEmulator

SCALE = 0.05


def emulator(script: CalleeScript | None = None, **kwargs: object) -> TelnyxEmulator:
    return TelnyxEmulator(
        API_KEY,
        script=script or CalleeScript(answer_delay_ms=100),
        time_scale=SCALE,
        **kwargs,  # type: ignore[arg-type]
    )


async def answered_call(app: TelnyxApp, **dial: object) -> str:
    call_id: str = (await app.dial(**dial)).json()["data"]["call_control_id"]
    await app.wait_for("call.answered")
    return call_id


async def test_gather_using_speak_collects_the_callees_keys() -> None:
    emu = emulator(dtmf_replies=("42#",))
    async with running(emu) as app:
        call_id = await answered_call(app)
        response = await app.command(
            call_id,
            "gather_using_speak",
            payload="Press your table number, then pound",
            voice="female",
            minimum_digits=1,
            maximum_digits=4,
            terminating_digit="#",
        )
        assert response.json() == {"data": {"result": "ok"}}
        ended = await app.wait_for("call.gather.ended")
        assert ended["data"]["payload"]["digits"] == "42"
        assert ended["data"]["payload"]["status"] == "valid"
        assert app.types(call_id)[2:] == [
            "call.speak.started",
            "call.speak.ended",
            "call.dtmf.received",
            "call.dtmf.received",
            "call.dtmf.received",
            "call.gather.ended",
        ]
        pressed = [e["data"]["payload"]["digit"] for e in app.of(call_id)[4:7]]
        assert pressed == ["4", "2", "#"]
        assert emu.calls[call_id].callee.heard == ["Press your table number, then pound"]


async def test_gather_without_keys_retries_then_times_out() -> None:
    emu = emulator()
    async with running(emu) as app:
        call_id = await answered_call(app)
        await app.command(
            call_id,
            "gather_using_speak",
            payload="Press one",
            voice="female",
            timeout_millis=1000,
            maximum_tries=2,
        )
        ended = await app.wait_for("call.gather.ended")
        assert ended["data"]["payload"]["status"] == "timeout"
        assert app.types(call_id).count("call.speak.started") == 2


async def test_gather_with_invalid_keys_replays_invalid_payload() -> None:
    emu = emulator(dtmf_replies=("9", "1"))
    async with running(emu) as app:
        call_id = await answered_call(app)
        await app.command(
            call_id,
            "gather_using_speak",
            payload="Press one or two",
            invalid_payload="That was not one or two",
            voice="female",
            valid_digits="12",
            maximum_digits=1,
        )
        ended = await app.wait_for("call.gather.ended")
        assert (ended["data"]["payload"]["digits"], ended["data"]["payload"]["status"]) == (
            "1",
            "valid",
        )
        assert emu.calls[call_id].callee.heard == ["Press one or two", "That was not one or two"]


async def test_playback_and_send_dtmf() -> None:
    emu = emulator()
    async with running(emu) as app:
        call_id = await answered_call(app)
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(8000)
            writer.writeframes(b"\0\0" * 4000)  # half a second
        content = base64.b64encode(buffer.getvalue()).decode()
        await app.command(call_id, "playback_start", playback_content=content, audio_type="wav")
        await app.command(call_id, "playback_start", audio_url="https://example.com/hold.mp3")
        await app.wait_for("call.playback.ended", count=2)
        assert app.types(call_id)[2:] == [
            "call.playback.started",
            "call.playback.ended",
            "call.playback.started",
            "call.playback.ended",
        ]
        assert app.payload("call.playback.ended", 1)["media_url"] == "https://example.com/hold.mp3"
        assert app.payload("call.playback.ended", 1)["status"] == "completed"
        assert (await app.command(call_id, "send_dtmf", digits="1234#")).status_code == 200
        callee = emu.calls[call_id].callee
        assert callee.digits == ["1234#"]
        assert callee.heard == [
            "[play playback_content]",
            "[play https://example.com/hold.mp3]",
        ]


async def test_transcription_interim_results_and_stop() -> None:
    script = CalleeScript(answer_delay_ms=100, replies=("first line here", "second line"))
    emu = emulator(script)
    async with running(emu) as app:
        call_id = await answered_call(app)
        await app.command(call_id, "transcription_start", interim_results=True)
        await app.wait_for("call.transcription", count=2)
        data = [e["data"]["payload"]["transcription_data"] for e in app.of(call_id)[2:]]
        assert [(d["transcript"], d["is_final"]) for d in data] == [
            ("first", False),
            ("first line here", True),
        ]
        await app.command(call_id, "transcription_stop")
        await app.command(call_id, "speak", payload="Go on", voice="female")
        await app.wait_for("call.speak.ended")
        await app.command(call_id, "hangup")
        await emu.wait_ended(call_id)
        assert app.types(call_id).count("call.transcription") == 2
        assert emu.calls[call_id].callee.said == ["first line here"]


async def test_both_tracks_transcribes_the_bot_too() -> None:
    emu = emulator(CalleeScript(answer_delay_ms=100, replies=("yes",)))
    async with running(emu) as app:
        call_id = await answered_call(app)
        await app.command(call_id, "speak", payload="Shall I book it?", voice="female")
        await app.command(call_id, "transcription_start", transcription_tracks="both")
        await app.wait_for("call.transcription", count=2)
        data = [e["data"]["payload"].get("transcription_data") for e in app.of(call_id)]
        tracks = [(d["transcription_track"], d["transcript"]) for d in data if d]
        assert tracks == [("outbound", "Shall I book it?"), ("inbound", "yes")]


async def test_client_state_is_replaced_by_a_command() -> None:
    first = base64.b64encode(b"one").decode()
    second = base64.b64encode(b"two").decode()
    emu = emulator()
    async with running(emu) as app:
        call_id = await answered_call(app, client_state=first)
        await app.command(call_id, "speak", payload="Hi", voice="female", client_state=second)
        await app.wait_for("call.speak.ended")
        states = [e["data"]["payload"]["client_state"] for e in app.of(call_id)]
        assert states == [first, first, second, second]
        assert emu.calls[call_id].extra["client_state"] == second


async def test_command_id_makes_a_command_idempotent() -> None:
    emu = emulator()
    async with running(emu) as app:
        call_id = await answered_call(app)
        for _ in range(2):
            response = await app.command(
                call_id, "speak", payload="Once", voice="female", command_id="cmd-1"
            )
            assert response.json() == {"data": {"result": "ok"}}
        await app.command(call_id, "hangup", command_id="cmd-2")
        await emu.wait_ended(call_id)
        again = await app.command(call_id, "hangup", command_id="cmd-2")
        assert again.status_code == 200  # a retried command is not an error
        assert app.types(call_id).count("call.speak.started") == 1
        assert len(emu.calls[call_id].extra["commands"]) == 2


async def test_dial_command_id_is_not_dialled_twice() -> None:
    emu = emulator()
    async with running(emu) as app:
        first = (await app.dial(command_id="dial-1")).json()["data"]
        second = (await app.dial(command_id="dial-1")).json()["data"]
        assert first["call_control_id"] == second["call_control_id"]
        assert len(emu.calls) == 1


async def test_hangup_during_speech_ends_the_speech_first() -> None:
    async def hang_up_on_start(app: TelnyxApp, data: Event) -> None:
        if data["event_type"] == "call.speak.started":
            await app.command(data["payload"]["call_control_id"], "hangup")

    emu = emulator()
    async with running(emu, hang_up_on_start) as app:
        call_id = await answered_call(app)
        await app.command(call_id, "speak", payload="A long announcement " * 5, voice="female")
        await emu.wait_ended(call_id)
        assert app.types(call_id)[2:] == ["call.speak.started", "call.speak.ended", "call.hangup"]
        assert app.payload("call.speak.ended")["status"] == "call_hangup"
        assert emu.calls[call_id].callee.heard == []


async def test_remote_hangup_and_unprompted_keys() -> None:
    emu = emulator()
    async with running(emu) as app:
        call_id = await answered_call(app)
        await emu.press_digits(call_id, "7")
        await app.wait_for("call.dtmf.received")
        assert app.payload("call.dtmf.received")["digit"] == "7"
        await emu.remote_hangup(call_id)
        await emu.wait_ended(call_id)
        hangup = app.payload("call.hangup")
        assert (hangup["hangup_cause"], hangup["hangup_source"]) == ("normal_clearing", "callee")


async def test_transcription_enabled_at_dial() -> None:
    emu = emulator(CalleeScript(answer_delay_ms=100, replies=("hello?",)))
    async with running(emu) as app:
        call_id = await answered_call(
            app, transcription=True, transcription_config={"transcription_engine": "B"}
        )
        event = await app.wait_for("call.transcription")
        assert event["data"]["payload"]["transcription_data"]["transcript"] == "hello?"
        assert emu.calls[call_id].callee.said == ["hello?"]


async def test_fixed_key_pair_and_live_call_status() -> None:
    emu = TelnyxEmulator(
        API_KEY, TEST_SECRET_KEY, script=CalleeScript(answer_delay_ms=100), time_scale=SCALE
    )
    assert emu.public_key == TEST_PUBLIC_KEY
    async with running(emu) as app:  # every webhook is verified against TEST_PUBLIC_KEY
        assert emu.api_base == f"{emu.url}/v2"
        call_id = await answered_call(app)
        assert app.api is not None
        live = (await app.api.get(f"/v2/calls/{call_id}")).json()["data"]
        assert live["is_alive"] is True
        assert live["call_duration"] >= 0
        await emu.hangup(call_id)  # the Twilio emulator's name for a remote hang-up
        await emu.wait_ended(call_id)
        assert app.payload("call.hangup")["hangup_source"] == "callee"


async def test_time_limit_ends_the_call() -> None:
    emu = emulator()
    async with running(emu) as app:
        call_id = await answered_call(app, time_limit_secs=30)
        call = await emu.wait_ended(call_id, timeout=5)
        assert call.hangup_cause == "time_limit"
        assert app.types(call_id) == ["call.initiated", "call.answered", "call.hangup"]
