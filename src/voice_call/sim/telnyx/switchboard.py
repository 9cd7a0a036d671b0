"""Transfers and bridges in the Telnyx emulator: a transfer target's own leg, and joining two legs.

`actions/transfer` dials `to` as a new leg (its webhooks carry `target_leg_client_state`) and
bridges it to the caller when it answers: `call.bridged` on both legs. A target not reached
sends its own `call.hangup` (user_busy, timeout, ...) and the caller's leg stays as it was
(Telnyx's documented behaviour). A Dial with `link_to` (a warm transfer: the app dials the
target itself) rings the target the same way; `actions/bridge` then joins it to the caller.
Targets behave as the emulator's `TransferTargets` script says; each transfer is logged there,
with what the target heard before the bridge (a warm transfer's briefing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from voice_call.sim.callee import CalleeScript
from voice_call.sim.telnyx import errors, params
from voice_call.sim.telnyx.call import TelnyxCall
from voice_call.sim.transfer_target import Connection, TransferTargets

Body = dict[str, Any]
NewLeg = Callable[..., TelnyxCall]
# the target's hangup_cause when it was not reached → the transfer log's status
_NOT_REACHED = {"user_busy": "busy", "timeout": "no-answer", "not_found": "failed"}


class Switchboard:
    def __init__(self, new_leg: NewLeg, find: Callable[[str], TelnyxCall | None]) -> None:
        self.new_leg = new_leg
        self.find = find
        self.targets = TransferTargets()
        self.links: dict[str, tuple[TelnyxCall, Connection]] = {}  # target leg → caller, log
        self._tasks: set[asyncio.Task[None]] = set()  # outlive either leg's own tasks

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def script(self, target: str) -> CalleeScript:
        script = self.targets.script(target)
        return CalleeScript(outcome=script.outcome, answer_delay_ms=script.answer_delay_ms)

    def transfer(self, leg: TelnyxCall, body: Body) -> None:
        """`actions/transfer`: ring `to`, bridge it to `leg` on answer."""
        leg.require_answered("transfer")
        to = params.number(body, "to")
        caller_id = params.text(body, "from") or leg.call.to_number
        state = params.client_state({"client_state": body.get("target_leg_client_state")})
        timeout = params.integer(body, "timeout_secs", 30, 5, 600)
        leg.apply_common(body)
        target = self.new_leg(
            "outbound",
            caller_id,
            to,
            self.script(to),
            connection_id=leg.connection_id,
            webhook_url=leg.webhook_url,
            client_state=state,
            timeout_secs=timeout,
        )
        link = self._open(leg, target, "cold")
        target.on_answered = lambda: self._join(leg, target, link)
        self._spawn(self._ring_after_speech(leg, target))

    async def _ring_after_speech(self, caller: TelnyxCall, target: TelnyxCall) -> None:
        """[M] What the caller was being told (queued speak commands) is said first."""
        async with caller.output:
            pass
        if not caller.is_ended:
            target.start_outbound()

    def linked_dial(self, caller: TelnyxCall, target: TelnyxCall) -> None:
        """A Dial with `link_to`: the app's warm transfer target, bridged by `actions/bridge`."""
        self._open(caller, target, "warm")

    def bridge(self, leg: TelnyxCall, body: Body) -> None:
        """`actions/bridge`: join `leg` and the leg `call_control_id` names."""
        leg.require_answered("bridge")
        other_id = params.required_text(body, "call_control_id")
        other = self.find(other_id)
        if other is None or other.is_ended:
            raise errors.not_found("Call not found: no live call has this call_control_id.")
        other.require_answered("bridge")
        leg.apply_common(body)
        found = self.links.get(other.id)
        link = found[1] if found else self.targets.open(leg.id, other.call.to_number, "warm")
        link.heard = list(other.callee.heard)  # its briefing, said before the bridge
        self._join(leg, other, link)

    def _open(self, caller: TelnyxCall, target: TelnyxCall, mode: str) -> Connection:
        link = self.targets.open(caller.id, target.call.to_number, mode)
        self.links[target.id] = (caller, link)
        self._spawn(self._watch(target, link))
        return link

    def _join(self, caller: TelnyxCall, target: TelnyxCall, link: Connection) -> None:
        self.targets.bridged(link)
        for one, other in ((caller, target), (target, caller)):
            one.post(
                "call.bridged", {**one.numbers(), "state": "bridged", "to": other.call.to_number}
            )
        talk_s = self.targets.script(link.target).talk_ms / 1000
        self._spawn(self._talk(caller, target, talk_s, link))

    async def _talk(
        self, caller: TelnyxCall, target: TelnyxCall, seconds: float, link: Connection
    ) -> None:
        """The parties talk, then the target hangs up; the caller's leg goes with it."""
        await caller.sleep(seconds)
        link.status = "completed"
        target.end("normal_clearing", "callee")
        caller.end("normal_clearing", "callee")

    async def _watch(self, target: TelnyxCall, link: Connection) -> None:
        await target.call.ended.wait()
        cause = target.call.hangup_cause or ""
        if not link.bridged_at:
            link.status = _NOT_REACHED.get(cause, "failed")
