"""Keys on every carrier: `dtmfSequence` on initiate is pressed once the callee answers (Twilio
SendDigits, Plivo send_digits, Telnyx send_dtmf after the answer), and digits the carrier
refuses are the caller's error, never a `bot.dtmf` in the call's log."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.providers.carriers import CALLEE, CARRIERS, carrier_stack
from tests.support import wait_until
from voice_call.errors import InvalidInput, Unavailable
from voice_call.sim.callee import CalleeScript

# what each emulator records as pressed for "ww1234#W" (Twilio has no 1 s pause: two `w`s)
PRESSED = {"twilio": "ww1234#ww", "telnyx": "ww1234#W", "plivo": "ww1234#W"}


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_a_dtmf_sequence_is_pressed_once_the_call_connects(
    tmp_path: Path, carrier: str
) -> None:
    script = CalleeScript(answer_delay_ms=200, reply_delay_ms=300, replies=("Hello?",))
    async with carrier_stack(carrier, tmp_path, script) as c:
        started = await c.call(
            "voicecall.initiate",
            to=CALLEE,
            message="Joining the bridge.",
            mode="conversation",
            dtmfSequence="ww1234#W",
        )
        call_id = started["callId"]
        record = await c.stack.wait_record(call_id, lambda r: r.answered_at is not None)
        call = c.emulated(record)
        await wait_until(lambda: call.callee.digits, what="the keys at the emulator")
        assert call.callee.digits == [PRESSED[carrier]]  # once, as the carrier spells them
        record = await c.record(call_id)
        assert record.metadata["dtmfSequence"] == "ww1234#W"
        await c.call("voicecall.end", callId=call_id)


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"dtmfSequence": "12a4"}, "may hold only the keys 0-9"),
        ({"dtmfSequence": "1" * 33}, "too long"),
        ({"dtmfSequence": "1" * 20 + "W" * 7}, "too long"),  # a W is two of Twilio's w
        ({"dtmfSequence": "123", "mode": "notify"}, "needs a conversation call"),
        ({"dtmfSequence": ""}, "dtmfSequence"),
    ],
)
async def test_a_bad_dtmf_sequence_is_refused_before_anything_is_dialled(
    tmp_path: Path, params: dict[str, str], why: str
) -> None:
    async with carrier_stack("twilio", tmp_path) as c:
        params = {"mode": "conversation", **params}
        with pytest.raises(InvalidInput, match=why):
            await c.call("voicecall.initiate", to=CALLEE, message="Hi", **params)
        assert not c.stack.emu.calls  # nothing dialled, nothing recorded
        assert await c.stack.runtime.store.list_recent() == []


@pytest.mark.parametrize("carrier", ["telnyx", "plivo"])
async def test_digits_the_carrier_refuses_are_an_error_and_never_logged(
    tmp_path: Path, carrier: str
) -> None:
    # still ringing: both carriers refuse keys for a call nobody has answered yet
    script = CalleeScript(answer_delay_ms=600_000)
    async with carrier_stack(carrier, tmp_path, script, scale=1.0) as c:
        started = await c.call("voicecall.initiate", to=CALLEE, message="Hi", mode="conversation")
        call_id = started["callId"]
        await c.stack.wait_record(call_id, lambda r: r.provider_call_id is not None)
        with pytest.raises(Unavailable, match="the carrier could not send digits"):
            await c.call("voicecall.dtmf", callId=call_id, digits="123")
        logged = [e.type for e in await c.stack.runtime.store.events(call_id=call_id)]
        assert "bot.dtmf" not in logged
        await c.call("voicecall.end", callId=call_id)
