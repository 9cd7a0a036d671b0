"""The emulators' control endpoint (`/_sim/calls`): bad input gets a 4xx with the reason."""

from __future__ import annotations

import httpx
import pytest

from voice_call.sim.plivo import PlivoEmulator
from voice_call.sim.telnyx import TelnyxEmulator
from voice_call.sim.twilio import TwilioEmulator

EMULATORS = {
    "twilio": lambda: TwilioEmulator("AC" + "1" * 32, "token"),
    "telnyx": lambda: TelnyxEmulator("KEYtest"),
    "plivo": lambda: PlivoEmulator("MA" + "1" * 18, "token"),
}


@pytest.mark.parametrize("carrier", sorted(EMULATORS))
async def test_control_endpoint_refuses_bad_input_clearly(carrier: str) -> None:
    async with EMULATORS[carrier]() as emu, httpx.AsyncClient(base_url=emu.url) as http:
        assert (await http.get("/_sim/calls")).json() == {"calls": []}
        form = await http.post("/_sim/calls", data={"from": "+15550001111"})
        garbled = await http.post(
            "/_sim/calls", content=b"{", headers={"content-type": "application/json"}
        )
        listed = await http.post("/_sim/calls", json=["+15550001111"])
        bad_number = await http.post("/_sim/calls", json={"from": "555", "to": "+15550001234"})
        no_inbound = await http.post(
            "/_sim/calls", json={"from": "+15550001111", "to": "+15550001234"}
        )
        replies = [form, garbled, listed, bad_number, no_inbound]
        assert [r.status_code for r in replies] == [415, 400, 400, 400, 409]
        assert "from must be an E.164 number" in bad_number.json()["error"]
        assert "--inbound-url" in no_inbound.json()["error"]
        assert (await http.get("/_sim/calls")).json() == {"calls": []}
