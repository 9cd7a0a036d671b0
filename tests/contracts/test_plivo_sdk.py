"""The official plivo SDK, pointed at the Plivo emulator, runs a whole call (issue 21).

The SDK has no host option: it reads its API root from module constants at each request
(`plivo.rest.client.API_VOICE_BASE_URI` for voice, `PLIVO_API_BASE_URI` otherwise), so the
test points those at the emulator. Place, fetch the live call, update it (transfer to new
XML), send digits, hang up, fetch the CDR — each answered in the shape the SDK parses.
"""

from __future__ import annotations

import asyncio

import plivo
import plivo.rest.client as sdk_client
import pytest

from tests.sim.plivo.app import AUTH_ID, AUTH_TOKEN, FakeApp, running
from tests.support import wait_until

HOLD = "<Response><Wait length='600'/></Response>"


async def test_plivo_sdk_places_fetches_updates_and_hangs_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = FakeApp(replies={"/answer": HOLD, "/moved": HOLD})
    async with running(app) as emu:
        root = f"{emu.url}/v1/Account"
        for name in ("PLIVO_API_BASE_URI", "API_VOICE_BASE_URI"):
            monkeypatch.setattr(sdk_client, name, root)
        client = plivo.RestClient(AUTH_ID, AUTH_TOKEN)

        fired = await asyncio.to_thread(
            client.calls.create,
            from_="14155550100",
            to_="14155550199",
            answer_url=app.url("/answer"),
            hangup_url=app.url("/hangup"),
        )
        call_uuid = emu.requests[fired.request_uuid]
        await wait_until(lambda: emu.calls[call_uuid].answered_at, 10, what="the answer")
        live = await asyncio.to_thread(client.live_calls.get, call_uuid)
        assert (live.call_status, live.call_uuid) == ("in-progress", call_uuid)
        moved = await asyncio.to_thread(
            client.calls.update, call_uuid, legs="aleg", aleg_url=app.url("/moved")
        )
        assert moved.message == "call transferred"
        await wait_until(lambda: app.of("/moved"), 10, what="the transfer")
        digits = await asyncio.to_thread(client.calls.send_digits, call_uuid, "42#")
        assert digits.message == "digits sent"
        await asyncio.to_thread(client.calls.delete, call_uuid)
        await emu.wait_ended(call_uuid)
        cdr = await asyncio.to_thread(client.calls.get, call_uuid)
    assert (cdr.call_uuid, cdr.hangup_source, cdr.hangup_cause_name) == (
        call_uuid,
        "API Request",
        "Normal Hangup",
    )
    assert emu.calls[call_uuid].callee.digits == ["42#"]
    assert all(r.signature_ok for r in app.received)
