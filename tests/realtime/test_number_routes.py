"""A number's `realtime` block on a realtime call (Twilio emulator + fake OpenAI Realtime): the
call to that number opens its model session with the number's instructions, voice and language;
a call to another number keeps the top level's."""

from __future__ import annotations

from pathlib import Path

from tests.providers.twilio.stack import APP_NUMBER, CALLER, TwilioStack
from tests.realtime.e2e import ANSWER
from tests.realtime.test_e2e_twilio import Realtime, realtime_twilio
from tests.support import wait_until
from voice_call.sim.openai import FakeOpenAI

NIGHT_LINE = "You are the clinic's night line. Take a message only."
DAY = "You are the clinic's day line."
PHARMACY_PROMPT = "You are the clinic's pharmacy desk."
OTHER = "+15550004000"
PHARMACY = "+15550005000"


def _updated(fake: FakeOpenAI, sessions: int) -> bool:
    """`sessions` model sessions were opened, each set up with a session.update."""
    opened = fake.conversations
    return len(opened) >= sessions and all(s.events("session.update") for s in opened)


async def _registered(stack: TwilioStack, sid: str) -> bool:
    return await stack.by_sid(sid) is not None


async def _call_until_set_up(rt: Realtime, number: str, sessions: int) -> None:
    """Call `number`, wait for its model session to be set up, hang up."""
    call = await rt.stack.emu.place_inbound(CALLER, number)
    await wait_until(lambda: _registered(rt.stack, call.id), timeout=20)
    found = await rt.stack.by_sid(call.id)
    assert found is not None
    await wait_until(lambda: _updated(rt.fake, sessions), timeout=20)
    await rt.stack.call("voicecall.end", callId=found.call_id)
    ended = await rt.stack.wait_ended(found.call_id)
    assert ended.metadata["realtime"] == "openai"


async def test_a_numbers_realtime_block_shapes_its_calls_session(tmp_path: Path) -> None:
    routes = {
        APP_NUMBER: {
            "language": "en-GB",
            "realtime": {"enabled": True, "instructions": NIGHT_LINE, "voice": "cedar"},
        },
        PHARMACY: {"responseSystemPrompt": PHARMACY_PROMPT},
        OTHER: {"inboundGreeting": "Day line."},
    }
    overrides = {"inboundPolicy": "open", "numbers": routes, "realtime": {"instructions": DAY}}
    async with realtime_twilio(tmp_path, [ANSWER] * 3, **overrides) as rt:
        for count, number in enumerate((APP_NUMBER, PHARMACY, OTHER), start=1):
            await _call_until_set_up(rt, number, count)
        routed, pharmacy, other = (
            s.events("session.update")[0]["session"] for s in rt.fake.conversations
        )
        assert routed["instructions"].startswith(NIGHT_LINE)
        assert routed["audio"]["output"]["voice"] == "cedar"
        assert routed["audio"]["input"]["transcription"]["language"] == "en"
        # a number's own prompt beats the top level's realtime.instructions
        assert pharmacy["instructions"].startswith(PHARMACY_PROMPT)
        assert other["instructions"].startswith(DAY)
        assert other["audio"]["output"]["voice"] != "cedar"
