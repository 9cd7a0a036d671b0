"""Recording on Twilio, end to end: the Recordings API on the answered call, the
RecordingStatusCallback's URL and duration on the record, the file downloaded with our
credentials from the emulator, and the consent line said before the recording starts."""

from __future__ import annotations

import wave
from pathlib import Path

from tests.providers.twilio.stack import ACCOUNT_SID, twilio_stack
from tests.support import wait_until
from voice_call.models import CallRecord

GREETING = "Hello, this is the clinic calling about your appointment."
CONSENT = "This call is recorded."


def _recorded(record: CallRecord) -> bool:
    return bool(record.metadata.get("recording", {}).get("url"))


async def test_a_recording_url_and_duration_land_on_the_record(tmp_path: Path) -> None:
    recording = {"enabled": True, "channels": "dual", "announce": CONSENT, "download": True}
    async with twilio_stack(tmp_path, recording=recording) as stack:
        call_id = await stack.answered_greeting(GREETING)
        await stack.call("voicecall.end", callId=call_id)
        record = await stack.wait_record(call_id, _recorded)
        record = await stack.wait_record(call_id, lambda r: "path" in r.metadata["recording"])
        call = stack.emulated(record)
        (started,) = stack.emu.recordings.by_id.values()
    found = record.metadata["recording"]
    assert found["status"] == "completed" and found["durationS"] >= 1
    assert found["url"].startswith(stack.emu.url) and started.id in found["url"]
    assert started.channels == 2 and started.call_id == record.provider_call_id
    # the consent line is the first thing the callee heard, with the greeting
    assert call.callee.heard[0] == f"{CONSENT} {GREETING}"
    (hook,) = stack.hooks("recording")
    assert hook.params["RecordingStatus"] == "completed" and hook.status_code == 200
    path = Path(found["path"])
    assert path.parent == stack.home / "recordings"
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 2 and wav.getnframes() >= 8000


async def test_a_call_is_not_recorded_unless_asked(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        call_id = await stack.answered_greeting(GREETING)
        await stack.call("voicecall.end", callId=call_id)
        record = await stack.wait_record(call_id, lambda r: r.terminal)
        await wait_until(lambda: stack.emulated(record).ended.is_set())
    assert "recording" not in record.metadata and not stack.emu.recordings.by_id


async def test_an_odd_recording_callback_is_a_4xx_or_harmless_never_a_500(tmp_path: Path) -> None:
    async with twilio_stack(tmp_path) as stack:
        call_id = await stack.answered_greeting(GREETING)
        record = await stack.record(call_id)
        url = f"{stack.webhook}?type=recording&callId={call_id}"
        base = {"AccountSid": ACCOUNT_SID, "CallSid": str(record.provider_call_id)}
        too_long = {**base, "RecordingUrl": "https://x/" + "a" * 3000}
        refused = await stack.post(url, too_long, stack.sign(url, too_long))
        assert refused.status_code == 400
        odd = {**base, "RecordingUrl": "https://api.twilio.com/r", "RecordingDuration": "²"}
        taken = await stack.post(url, odd, stack.sign(url, odd))
        assert taken.status_code == 200
        found = (await stack.record(call_id)).metadata["recording"]
    assert found == {"url": "https://api.twilio.com/r"}  # no duration from "²", no status
