"""Each carrier's stack (our server + its emulator) behind one shape, for tests that hold every
carrier to the same behaviour: `carrier_stack("twilio" | "telnyx" | "plivo", tmp_path, ...)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.providers.plivo.stack import PlivoStack, plivo_stack
from tests.providers.telnyx.stack import TelnyxStack, telnyx_stack
from tests.providers.twilio.stack import TwilioStack, twilio_stack
from voice_call.models import CallRecord
from voice_call.sim.callee import CalleeScript
from voice_call.sim.common import EmulatedCall
from voice_call.sim.plivo.markup import speech_seconds

CARRIERS = ("twilio", "telnyx", "plivo")
CALLEE = "+15550002000"  # the number every stack dials


@dataclass
class Carrier:
    name: str
    stack: TwilioStack | TelnyxStack | PlivoStack
    scale: float

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.stack.call(method, **params)

    async def wait_ended(self, call_id: str, timeout: float = 20.0) -> CallRecord:
        return await self.stack.wait_ended(call_id, timeout)

    async def record(self, call_id: str) -> CallRecord:
        return await self.stack.record(call_id)

    def emulated(self, record: CallRecord) -> EmulatedCall:
        """The emulator's view of one of our calls."""
        assert record.provider_call_id is not None
        if isinstance(self.stack, PlivoStack):
            return self.stack.carrier_call(record)
        return self.stack.emu.calls[record.provider_call_id]

    def heard_whole_at(self, call: EmulatedCall, index: int = 0) -> float:
        """When the callee had heard line `index` to its end (time.time())."""
        at = call.callee.heard_at[index]
        if self.name == "plivo":  # the Plivo emulator notes a line as it starts to say it
            at += speech_seconds(call.callee.heard[index]) * self.scale
        return at


@asynccontextmanager
async def carrier_stack(
    name: str,
    tmp_path: Path,
    script: CalleeScript | None = None,
    *,
    scale: float = 0.05,
    **config: Any,
) -> AsyncIterator[Carrier]:
    """Our server on `name` against its emulator; `config` goes over the stack's own."""
    script = script or CalleeScript(answer_delay_ms=300, reply_delay_ms=300)
    if name == "twilio":
        async with twilio_stack(tmp_path, script, scale=scale, **config) as twilio:
            yield Carrier(name, twilio, scale)
    elif name == "telnyx":
        async with telnyx_stack(tmp_path, script=script, time_scale=scale, **config) as telnyx:
            yield Carrier(name, telnyx, scale)
    elif name == "plivo":
        async with plivo_stack(tmp_path, script, time_scale=scale, config=config) as plivo:
            yield Carrier(name, plivo, scale)
    else:
        raise ValueError(f"no stack for carrier {name!r}")
