"""Recording on Plivo, end to end: `POST Call/{uuid}/Record/` once answered, the callback_url's
record_url and duration on the record, and the file downloaded with our credentials."""

from __future__ import annotations

import wave
from pathlib import Path

from tests.providers.plivo.stack import CALLEE, plivo_stack
from tests.support import wait_until
from voice_call.models import CallRecord

GREETING = "Hi, this is the clinic calling about your appointment."


def _downloaded(record: CallRecord) -> bool:
    return "path" in record.metadata.get("recording", {})


async def test_a_recording_url_and_duration_land_on_the_record(tmp_path: Path) -> None:
    config = {"recording": {"enabled": True, "download": True}}
    async with plivo_stack(tmp_path, config=config) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message=GREETING, mode="conversation"
        )
        call_id = started["callId"]
        await wait_until(lambda: bool(stack.emulator.recordings.by_id))  # recording now
        await stack.call("voicecall.end", callId=call_id)
        record = await stack.wait_record(call_id, _downloaded)
    (made,) = stack.emulator.recordings.by_id.values()
    assert made.call_id == record.provider_call_id
    found = record.metadata["recording"]
    assert found["status"] == "completed" and found["durationS"] == made.duration_s
    assert found["url"].startswith(stack.emulator.url) and made.id in found["url"]
    (hook,) = stack.hooks("recording")
    assert hook.params["call_uuid"] == record.provider_call_id and hook.status_code == 200
    path = Path(found["path"])
    assert path.parent == stack.home / "recordings"
    with wave.open(str(path), "rb") as wav:
        assert wav.getnframes() == made.duration_s * 8000


async def test_a_call_placed_with_record_true_is_recorded_without_the_config(
    tmp_path: Path,
) -> None:
    async with plivo_stack(tmp_path) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message=GREETING, mode="conversation", record=True
        )
        call_id = started["callId"]
        await wait_until(lambda: bool(stack.emulator.recordings.by_id))  # recording now
        await stack.call("voicecall.end", callId=call_id)
        record = await stack.wait_record(call_id, lambda r: "recording" in r.metadata)
        await wait_until(lambda: bool(stack.hooks("recording")))
    assert record.metadata["recording"]["status"] == "completed"
    assert "path" not in record.metadata["recording"]  # download is off
