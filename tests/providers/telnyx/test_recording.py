"""Recording on Telnyx, end to end: `record_start` once the call is answered,
`call.recording.saved`'s URL and duration on the record, and the pre-signed file downloaded
from the emulator (without the API key)."""

from __future__ import annotations

import wave
from pathlib import Path

from tests.providers.telnyx.stack import CALLEE, commands, hooks_of, telnyx_stack
from voice_call.models import CallRecord

MESSAGE = "Hello, this is the pharmacy: your prescription is ready."
CONSENT = "This call is recorded."


def _downloaded(record: CallRecord) -> bool:
    return "path" in record.metadata.get("recording", {})


async def test_a_recording_url_and_duration_land_on_the_record(tmp_path: Path) -> None:
    recording = {"enabled": True, "channels": "mono", "announce": CONSENT, "download": True}
    async with telnyx_stack(tmp_path, recording=recording) as stack:
        started = await stack.call("voicecall.initiate", to=CALLEE, message=MESSAGE, mode="notify")
        call_id = started["callId"]
        leg = await stack.leg(call_id)
        await stack.emu.wait_ended(leg.id, timeout=15)
        record = await stack.wait_record(call_id, _downloaded)
    (command,) = commands(leg, "record_start")
    assert command["body"]["format"] == "wav" and command["body"]["channels"] == "single"
    assert leg.callee.heard == [f"{CONSENT} {MESSAGE}"]
    kinds = [h.kind for h in hooks_of(stack.emu, leg.id)]
    assert kinds.index("call.hangup") < kinds.index("call.recording.saved")
    found = record.metadata["recording"]
    (made,) = stack.emu.recordings.by_id.values()
    assert found["status"] == "completed" and found["durationS"] == made.duration_s
    assert found["url"] == f"{stack.emu.url}/sim/recordings/{made.id}.wav"
    path = Path(found["path"])
    assert path.parent == stack.home / "recordings" and path.suffix == ".wav"
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 1 and wav.getnframes() == made.duration_s * 8000


async def test_a_call_placed_with_record_false_is_not_recorded(tmp_path: Path) -> None:
    async with telnyx_stack(tmp_path, recording={"enabled": True}) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message=MESSAGE, mode="notify", record=False
        )
        leg = await stack.leg(started["callId"])
        await stack.emu.wait_ended(leg.id, timeout=15)
        record = await stack.wait_ended(started["callId"])
    assert commands(leg, "record_start") == [] and "recording" not in record.metadata
    assert record.metadata["record"] is False
