"""A Telnyx signature covers `timestamp|body`, so the same event re-signed at another time is a
new request to the replay cache; the event's `data.id` (docs/carriers.md §2.2) still names it,
over the real server, and it is applied once."""

from __future__ import annotations

import time
from pathlib import Path

from tests.providers.telnyx.stack import (
    CALLEE,
    hooks_of,
    signed_headers,
    telnyx_stack,
    wire_body,
)
from voice_call.sim.callee import CalleeScript

SCRIPT = CalleeScript(replies=("Hello there.",), answer_delay_ms=100, reply_delay_ms=100)


async def test_the_same_event_re_signed_with_new_timestamps_applies_once(tmp_path: Path) -> None:
    async with telnyx_stack(tmp_path, script=SCRIPT) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Hi, it's the bank.", mode="conversation"
        )
        call_id = started["callId"]
        await stack.wait_user_lines(call_id, 1)
        record = await stack.record(call_id)
        assert record.provider_call_id is not None
        pid = record.provider_call_id
        await stack.emu.webhooks.wait_for(  # logged once our answer is back
            lambda h: h.kind == "call.transcription" and h in hooks_of(stack.emu, pid)
        )
        [hook] = [h for h in hooks_of(stack.emu, pid) if h.kind == "call.transcription"]
        body = wire_body(hook)  # the same bytes, only the signed timestamp differs
        before = (await stack.runtime.store.last_seq(), len(record.transcript))
        now = int(time.time())
        for stamp in (now - 120, now - 60, now):
            headers = signed_headers(stack.emu.private_key, body, timestamp=stamp)
            if stamp == now:
                stack.runtime.replay._entries.clear()  # later: only the store remembers
            response = await stack.post(body, headers)
            assert response.status_code == 200
            assert response.json() == {"results": ["duplicate"]}
        after = await stack.record(call_id)
        assert (await stack.runtime.store.last_seq(), len(after.transcript)) == before
