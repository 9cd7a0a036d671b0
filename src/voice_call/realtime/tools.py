"""The functions a realtime model may call, and how a call of one is answered.

Built in: `end_call` (the bridge lets the goodbye play, then hangs up), `send_dtmf`, and `consult`
(on unless `realtime.toolPolicy` is "none": the configured responder answers a question the
voice model should not answer alone). Custom `realtime.tools` are answered by the hook. The call
itself reaches the service only through `CallControl`, which the wiring implements, so this
module and the bridge never touch the manager or a carrier.

Every failure becomes a `ToolError` whose text goes back to the model as the tool's error, so
the model can tell the caller something true ("I couldn't look that up") instead of going quiet.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from voice_call.models import EndReason
from voice_call.realtime.model import RealtimeError, ToolSpec

END_CALL = "end_call"
SEND_DTMF = "send_dtmf"
CONSULT = "consult"
BUILT_IN = (END_CALL, SEND_DTMF, CONSULT)

ToolPolicy = Literal["safe-read-only", "owner", "none"]

_DIGITS = re.compile(r"[0-9*#A-Dw]{1,64}")

END_CALL_SPEC = ToolSpec(
    END_CALL,
    "Hang up the phone call. Say a short goodbye first; the call ends once it has been heard.",
)
SEND_DTMF_SPEC = ToolSpec(
    SEND_DTMF,
    "Press keys on the phone keypad (DTMF), e.g. to choose an option in a phone menu.",
    {
        "type": "object",
        "properties": {
            "digits": {
                "type": "string",
                "description": "Keys to press in order: 0-9, *, #, A-D; w pauses half a second.",
            }
        },
        "required": ["digits"],
    },
)
CONSULT_SPEC = ToolSpec(
    CONSULT,
    "Ask the assistant behind this call a question that needs deeper reasoning, facts you "
    "are not sure of, or current information. Speak its answer to the caller.",
    {
        "type": "object",
        "properties": {
            "question": {
                "type": "string",
                "description": "The question, with what the caller said that it depends on.",
            }
        },
        "required": ["question"],
    },
)


class ToolError(Exception):
    """A tool call that failed; its text is what the model is told."""


class CallControl(Protocol):
    """What the bridge may do to its call, implemented by the wiring (manager, responder, hook)."""

    async def end_call(self, call_id: str, reason: EndReason) -> None:
        """Hang up and record `reason`."""

    async def consult(self, call_id: str, question: str) -> str:
        """The responder's answer to `question`, with the call's context."""

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        """Press `digits` on the call (the carrier's DTMF, or tones on the stream)."""

    async def call_hook_tool(self, call_id: str, name: str, arguments: dict[str, Any]) -> Any:
        """A custom `realtime.tools` function, answered by the hook URL (JSON result)."""

    async def end_with_apology(self, call_id: str, apology: str, error: str) -> None:
        """The model is gone for good: say `apology` in the carrier's own voice, then end the
        call with reason error and `error` on the record."""


def consult_enabled(policy: ToolPolicy) -> bool:
    return policy != "none"


def tool_specs(policy: ToolPolicy, custom: Sequence[ToolSpec] = ()) -> tuple[ToolSpec, ...]:
    """What the session offers the model: the built-ins, then `realtime.tools`."""
    for spec in custom:
        if spec.name in BUILT_IN:
            raise RealtimeError(
                f'realtime.tools: "{spec.name}" is a built-in tool — choose another name'
            )
    built_in = [END_CALL_SPEC, SEND_DTMF_SPEC]
    if consult_enabled(policy):
        built_in.append(CONSULT_SPEC)
    return (*built_in, *custom)


class Tools:
    """Answers one call's tool calls (all but `end_call`, which needs the bridge's playback)."""

    def __init__(
        self,
        control: CallControl,
        call_id: str,
        *,
        policy: ToolPolicy = "safe-read-only",
        custom: Sequence[ToolSpec] = (),
        filler_after_s: float = 1.5,
        timeout_s: float = 30.0,
    ) -> None:
        self.control = control
        self.call_id = call_id
        self.specs = tool_specs(policy, custom)
        self._names = {spec.name for spec in self.specs}
        self._custom = {spec.name for spec in custom}
        self.filler_after_s = filler_after_s
        self.timeout_s = timeout_s

    async def call(self, name: str, arguments: dict[str, Any], *, slow: Callable[[], None]) -> Any:
        """The tool's output; raises ToolError. `slow` is called once if a consult is still
        running after `filler_after_s` (the bridge has the model say a filler line)."""
        if name not in self._names or name == END_CALL:
            raise ToolError(f'there is no tool named "{name}"')
        try:
            async with asyncio.timeout(self.timeout_s):
                if name == SEND_DTMF:
                    return await self._send_dtmf(arguments)
                if name == CONSULT:
                    return await self._consult(arguments, slow)
                return await self.control.call_hook_tool(self.call_id, name, arguments)
        except ToolError:
            raise
        except TimeoutError:
            raise ToolError(f"{name} took longer than {self.timeout_s:g} s") from None
        except Exception as exc:
            raise ToolError(str(exc) or type(exc).__name__) from None

    async def _send_dtmf(self, arguments: dict[str, Any]) -> dict[str, str]:
        digits = arguments.get("digits")
        if not isinstance(digits, str) or not _DIGITS.fullmatch(digits):
            raise ToolError("digits must be 1-64 of 0-9, *, #, A-D or w")
        await self.control.send_dtmf(self.call_id, digits)
        return {"sent": digits}

    async def _consult(self, arguments: dict[str, Any], slow: Callable[[], None]) -> dict[str, str]:
        question = arguments.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ToolError("question must be a non-empty string")
        answer = asyncio.ensure_future(self.control.consult(self.call_id, question))
        try:
            done, _ = await asyncio.wait({answer}, timeout=self.filler_after_s)
            if not done:
                slow()  # one filler line per consult, however long it takes
            return {"answer": await answer}
        finally:
            answer.cancel()
