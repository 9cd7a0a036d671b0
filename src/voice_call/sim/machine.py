"""An answering machine (or fax) on the far end, shared by the mock provider and the emulators.

A callee whose script's outcome is `machine` answers with a greeting of `greeting_ms`, then
beeps; a `fax` answers with fax tones. The machine never speaks to the bot. It logs when each
thing the app said *began*, in emulated seconds from the beep (negative: said over the greeting,
lost to the recording), so a test can check a voicemail was left after the beep, not into it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voice_call.sim.callee import CalleeScript

MACHINE_OUTCOMES = ("machine", "fax")
# how long a carrier's detector listens before it calls a person a person (emulated seconds)
HUMAN_VERDICT_S = 0.5
# how soon a detector that need not wait for the beep calls a machine a machine
MACHINE_VERDICT_S = 1.5


@dataclass
class AnsweringMachine:
    greeting_s: float  # emulated seconds of greeting before the beep
    fax: bool = False
    time_scale: float = 1.0
    now: Callable[[], float] = time.time  # the mock passes its (fake) clock
    answered_at: float = 0.0  # set from `now` when the machine picks up
    # (what the app said, when it began: emulated seconds after the beep)
    started: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.answered_at = self.answered_at or self.now()

    @property
    def beep_at(self) -> float:
        """Wall-clock time of the beep (the end of the greeting)."""
        return self.answered_at + self.greeting_s * self.time_scale

    def begin(self, text: str) -> None:
        """The app began saying `text` (a Say/Speak verb started, or stream audio began)."""
        self.started.append((text, (self.now() - self.beep_at) / self.time_scale))

    def seconds_to_beep(self) -> float:
        """Emulated seconds until the beep (0 once it has sounded)."""
        return max(0.0, self.beep_at - self.now()) / self.time_scale

    async def until_beep(self) -> None:
        await asyncio.sleep(max(0.0, self.beep_at - self.now()))

    def offsets(self) -> list[float]:
        return [offset for _, offset in self.started]


def answer_machine(
    script: CalleeScript,
    extra: dict[str, Any],
    time_scale: float = 1.0,
    now: Callable[[], float] = time.time,
) -> AnsweringMachine | None:
    """On answer: a machine callee starts its greeting (kept in `extra["machine"]`)."""
    if script.outcome not in MACHINE_OUTCOMES:
        return None
    fax = script.outcome == "fax"
    machine = AnsweringMachine(script.greeting_ms / 1000, fax, time_scale, now)
    extra["machine"] = machine
    return machine


def note_start(extra: dict[str, Any], text: str) -> None:
    """Log the start of something the app said, when the callee is a machine."""
    machine = extra.get("machine")
    if isinstance(machine, AnsweringMachine):
        machine.begin(text)
