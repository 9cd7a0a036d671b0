"""`silenceTimeoutMs` reaches every carrier as its own end-of-speech setting, rounded alike
(to the nearest second, within the carrier's range): Twilio `<Gather speechTimeout>`, Plivo
`<GetInput speechEndTimeout>` (2-10 s), Telnyx Deepgram `utterance_end_ms` (at most 5 s).
Checked on what each emulator received."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.providers.carriers import CALLEE, CARRIERS, carrier_stack
from tests.providers.plivo.stack import PlivoStack
from tests.providers.telnyx.stack import TelnyxStack, commands
from tests.providers.twilio.stack import TwilioStack
from tests.support import wait_until
from voice_call.clock import RealClock
from voice_call.config import parse_config
from voice_call.providers.telnyx.provider import build
from voice_call.sim.callee import CalleeScript

SCRIPT = CalleeScript(answer_delay_ms=200, reply_delay_ms=300, replies=("Yes, hello.",) * 3)
# silenceTimeoutMs → Twilio speechTimeout, Plivo speechEndTimeout, Telnyx utterance_end_ms
CASES = [
    (2600, {"twilio": "3", "plivo": "3", "telnyx": 3000}),
    (800, {"twilio": "1", "plivo": "2", "telnyx": 1000}),  # the default
    (60_000, {"twilio": "60", "plivo": "10", "telnyx": 5000}),
]


def _elements(bodies: list[str], tag: str) -> list[ET.Element]:
    found = []
    for body in bodies:
        if f"<{tag}" in body:
            found += list(ET.fromstring(body).iter(tag))
    return found


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize(("silence_ms", "expected"), CASES)
async def test_each_carrier_receives_the_silence_timeout(
    tmp_path: Path, carrier: str, silence_ms: int, expected: dict[str, str | int]
) -> None:
    async with carrier_stack(carrier, tmp_path, SCRIPT, silenceTimeoutMs=silence_ms) as c:
        await c.call("voicecall.initiate", to=CALLEE, message="Hi there.", mode="conversation")
        stack = c.stack
        if isinstance(stack, TwilioStack):
            emu = stack.emu

            def twiml() -> list[ET.Element]:
                return _elements([h.response_body for h in emu.webhooks], "Gather")

            await wait_until(twiml, what="a Gather the Twilio emulator fetched")
            assert {g.get("speechTimeout") for g in twiml()} == {expected["twilio"]}
        elif isinstance(stack, PlivoStack):
            plivo = stack.emulator

            def xml() -> list[ET.Element]:
                return _elements([h.response_body for h in plivo.webhooks], "GetInput")

            await wait_until(xml, what="a GetInput the Plivo emulator fetched")
            assert {g.get("speechEndTimeout") for g in xml()} == {expected["plivo"]}
        else:
            assert isinstance(stack, TelnyxStack)
            [call] = stack.emu.calls.values()
            leg = stack.emu.leg(call.id)
            await wait_until(lambda: commands(leg, "transcription_start"))
            body = commands(leg, "transcription_start")[0]["body"]
            assert body["transcription_engine"] == "Deepgram"
            config = body["transcription_engine_config"]
            assert config["utterance_end_ms"] == expected["telnyx"]
            assert config["language"] == body["language"] == "en"


def test_telnyx_warns_when_a_language_keeps_it_from_applying(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Telnyx's end-of-speech setting is Deepgram's: a language only Google transcribes is
    said so at start, never silently left without it."""
    raw = {
        "provider": "telnyx",
        "fromNumber": "+15550001000",
        "telnyx": {"apiKey": "KEY", "connectionId": "conn", "language": "it"},
        "skipSignatureVerification": True,
        "numbers": {"+15550001000": {"language": "en-GB"}},
    }
    with caplog.at_level(logging.WARNING, logger="voice_call.telnyx"):
        build(parse_config(raw, env={}), RealClock(), tmp_path)
    warnings = [r.getMessage() for r in caplog.records if "silenceTimeoutMs" in r.getMessage()]
    assert len(warnings) == 1 and "'it'" in warnings[0]  # en-GB is Deepgram's: no warning
