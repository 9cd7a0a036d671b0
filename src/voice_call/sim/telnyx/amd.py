"""Telnyx answering-machine detection on an emulated call: Dial's `answering_machine_detection`
(+ `answering_machine_detection_config`) and the `call.machine.*` webhooks it sends once the
call is answered: `call.machine.detection.ended` (`result` human | machine | not_sure) and, for
the modes that listen for the end of the greeting, `call.machine.greeting.ended`
(`beep_detected`); with `premium`, `call.machine.premium.detection.ended` (human_residence |
machine | fax_detected | ...) and `call.machine.premium.greeting.ended`.
"""

from __future__ import annotations

from typing import Any, Protocol

from voice_call.sim.common import EmulatedCall
from voice_call.sim.machine import HUMAN_VERDICT_S, MACHINE_VERDICT_S, AnsweringMachine
from voice_call.sim.telnyx import errors, params

Body = dict[str, Any]


class Leg(Protocol):
    """What detection needs of a call (sim/telnyx/call.py's TelnyxCall)."""

    call: EmulatedCall
    is_ended: bool

    async def sleep(self, seconds: float) -> None: ...
    def numbers(self) -> Body: ...
    def post(self, event_type: str, payload: Body) -> None: ...


AMD_MODES = ("premium", "detect", "detect_beep", "detect_words", "greeting_end", "disabled")
# modes that follow the verdict with call.machine.greeting.ended
GREETING_MODES = ("premium", "detect_beep", "detect_words", "greeting_end")
CONFIG_MILLIS = (
    "total_analysis_time_millis",
    "after_greeting_silence_millis",
    "between_words_silence_millis",
    "greeting_duration_millis",
    "initial_silence_millis",
    "maximum_word_length_millis",
    "greeting_silence_duration_millis",
    "greeting_total_analysis_time_millis",
)


def dial_amd(body: Body) -> tuple[str, Body]:
    """Dial's detection mode and config, checked as Telnyx checks them (422 otherwise)."""
    mode = params.choice(body, "answering_machine_detection", AMD_MODES, "disabled")
    config = body.get("answering_machine_detection_config") or {}
    if not isinstance(config, dict):
        raise errors.invalid(
            "answering_machine_detection_config",
            "'answering_machine_detection_config' must be an object.",
        )
    for name in CONFIG_MILLIS:
        if name in config:
            params.integer(config, name, 0, 0, 600_000)
    return mode, config


async def run_detection(leg: Leg, mode: str) -> None:
    """Listen from the answer on, then send the verdict (and the beep) as Telnyx does."""
    premium = mode == "premium"
    prefix = "call.machine.premium." if premium else "call.machine."
    machine = leg.call.extra.get("machine")
    if not isinstance(machine, AnsweringMachine):
        await leg.sleep(HUMAN_VERDICT_S)
        verdict = "human_residence" if premium else "human"
    elif machine.fax:
        await leg.sleep(HUMAN_VERDICT_S)
        verdict = "fax_detected" if premium else "machine"
    else:
        await leg.sleep(min(machine.greeting_s, MACHINE_VERDICT_S))
        verdict = "machine"
    if leg.is_ended:
        return
    leg.post(prefix + "detection.ended", {**leg.numbers(), "result": verdict})
    if (
        verdict != "machine"
        or mode not in GREETING_MODES
        or not isinstance(machine, AnsweringMachine)
    ):
        return
    await machine.until_beep()
    if not leg.is_ended:
        leg.post(prefix + "greeting.ended", {**leg.numbers(), "result": "beep_detected"})
