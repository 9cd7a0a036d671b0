"""ClusterRouter: events and commands reach the instance that owns their call.

Each call has one owner (cluster/ownership.py), whose CallManager holds what lives only in
memory: continue turns, auto-reply runs, the greeting, timers, the per-call lock. Any instance
takes any webhook or RPC; the router finds the call's owner and either applies the event or
command here (this instance owns it, or just took it over from a dead owner) or hands it to the
owner over the channel (ops "event", "command", "end-after-drop", "call-action") and returns its
answer. A realtime bridge's actions on its call (hang up, speak, digits: realtime/control.py)
run at the owner the same way, wherever the bridge holds the stream.

An owner that does not answer is waited for, up to its key's lifetime and a second: once its key
is gone it is dead, and the call is taken over here (`CallManager.adopt`: restore's decision,
timers re-armed from the record). An owner still alive after that is reported Unavailable (a
webhook answers 503 and the carrier retries). A call unknown here, or already ended, needs no
owner: the local manager answers (an inbound call is accepted here and becomes ours).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from voice_call.cluster import Cluster
from voice_call.cluster.channel import Unreachable
from voice_call.cluster.instance import INSTANCE_TTL_S
from voice_call.cluster.ownership import Claim
from voice_call.commands import POLL_SLACK_MS
from voice_call.errors import InvalidInput, NotFound, Unavailable
from voice_call.manager.manager import CallManager
from voice_call.models import CallEvent, CallRecord, CallState

log = logging.getLogger("voice_call.cluster.router")

EVENT_OP = "event"
COMMAND_OP = "command"
END_OP = "end-after-drop"
ACTION_OP = "call-action"  # a realtime bridge's end, speak or digits
COMMAND_TIMEOUT_S = 30.0  # any command but a continue turn
OWNER_WAIT_S = INSTANCE_TTL_S + 1.0  # a silent owner's key is gone by then if it died
POLL_S = 0.2
# A call saved moments ago may not have its owner key yet (taken right after the first save):
# no sweep or restart takes it over before this age.
NEW_CALL_GRACE_S = 2.0
ATTEMPTS = 3  # owners tried in turn (each dead one is waited for) before giving up
# Answered by any instance, from the store or by creating the call here.
LOCAL_METHODS = frozenset({"voicecall.initiate", "voicecall.start", "voicecall.status"})
TURN_START = "voicecall.continue.start"
TURN_RESULT = "voicecall.continue.result"
TURN_KEYS = ("turnId", "operationId")

LocalDispatch = Callable[[str, Any], Awaitable[dict[str, Any]]]


class ClusterRouter:
    def __init__(
        self,
        cluster: Cluster,
        manager: CallManager,
        run_here: LocalDispatch,
        *,
        transcript_timeout_ms: int,
        owner_wait_s: float = OWNER_WAIT_S,
    ) -> None:
        self.cluster = cluster
        self.manager = manager
        self._run_here = run_here  # the command layer on this instance's manager and turns
        self._continue_s = (transcript_timeout_ms + POLL_SLACK_MS) / 1000
        self._owner_wait_s = owner_wait_s
        self.new_call_grace_s = NEW_CALL_GRACE_S
        self._locks: dict[str, asyncio.Lock] = {}
        self._ready = asyncio.Event()  # set once start's restore is done: then others are served
        self._tasks: set[asyncio.Task[None]] = set()
        self.owned: set[str] = set()  # live calls this instance took (for the sweep's checks)
        self._lapses = cluster.instance.lapses
        channel = cluster.channel
        channel.handle(EVENT_OP, self._serve_event)
        channel.handle(COMMAND_OP, self._serve_command)
        channel.handle(END_OP, self._serve_end)
        channel.handle(ACTION_OP, self._serve_action)
        manager.claim_new = self._take_new
        manager.claim = self._claim_at_start
        manager.owns = self._owns
        manager.end_listeners.append(self._call_ended)

    @property
    def id(self) -> str:
        return self.cluster.id

    # ---------------------------------------------------------------- the faces

    async def handle_event(self, event: CallEvent) -> str:
        """The sink of providers and media sessions: apply `event` at its call's owner."""
        if event.call_id and self._surely_mine(event.call_id):
            return await self.manager.handle_event(event)  # no lookup, no claim: 2 round trips
        record = await self._find(event)
        if record is None or record.terminal:
            return await self.manager.handle_event(event)
        outcome = await self._at_owner(
            record.call_id,
            EVENT_OP,
            {"event": event.wire(), "callId": record.call_id},
            lambda: self.manager.handle_event(event),
            COMMAND_TIMEOUT_S,
        )
        return str(outcome)

    async def dispatch(self, method: str, params: Any) -> dict[str, Any]:
        """Run one command-layer method where it belongs: a per-call command at the call's
        owner, a continue turn's result where the turn runs, anything else here."""
        if method == TURN_RESULT:
            return await self._turn_result(params)
        call_id = None if method in LOCAL_METHODS else _call_id_of(params)
        record = await self.manager.store.get(call_id) if call_id else None
        if record is None or record.terminal:
            return await self._here(method, params)  # the local answer: not found, ended, ...
        timeout_s = self._continue_s if method == "voicecall.continue" else COMMAND_TIMEOUT_S
        result = await self._at_owner(
            record.call_id,
            COMMAND_OP,
            {"method": method, "params": params},
            lambda: self._here(method, params),
            timeout_s,
        )
        return dict(result)

    async def end_after_stream_drop(self, call_id: str, reason: CallState) -> None:
        """A media stream is gone for good: its call's owner ends the call."""
        record = await self.manager.store.get(call_id)
        if record is None or record.terminal:
            return
        await self._at_owner(
            call_id,
            END_OP,
            {"callId": call_id, "reason": reason.value},
            lambda: self.manager.end_after_stream_drop(call_id, reason),
            COMMAND_TIMEOUT_S,
        )

    # ---------------------------------------------------------------- a bridge's actions

    async def end(
        self, call_id: str, reason: CallState = CallState.HANGUP_BOT, *, error: str | None = None
    ) -> None:
        """Hang the call up at its owner, `reason` and `error` kept on its record."""
        await self._act(call_id, {"action": "end", "reason": reason.value, "error": error})

    async def speak(self, call_id: str, message: str) -> None:
        await self._act(call_id, {"action": "speak", "message": message})

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        await self._act(call_id, {"action": "dtmf", "digits": digits})

    async def _act(self, call_id: str, action: dict[str, Any]) -> None:
        """Apply `action` at the call's owner; an unknown or ended call is answered here, as
        on one instance (not found, not active, already ended)."""
        record = await self.manager.store.get(call_id)
        if record is None or record.terminal:
            return await self._apply(call_id, action)
        await self._at_owner(
            call_id,
            ACTION_OP,
            {**action, "callId": call_id},
            lambda: self._apply(call_id, action),
            COMMAND_TIMEOUT_S,
        )

    async def _apply(self, call_id: str, action: dict[str, Any]) -> None:
        kind = action.get("action")
        if kind == "end":
            reason = CallState(action["reason"])
            await self.manager.end(call_id, reason, error=action.get("error"))
        elif kind == "speak":
            await self.manager.speak(call_id, str(action["message"]))
        elif kind == "dtmf":
            await self.manager.send_dtmf(call_id, str(action["digits"]))
        else:
            raise InvalidInput(f"unknown call action {kind!r}: expected end, speak or dtmf")

    # ---------------------------------------------------------------- ownership

    async def take(self, call_id: str) -> Claim:
        """Claim `call_id`; one whose owner was missing or dead is restored here first."""
        lock = self._locks.setdefault(call_id, asyncio.Lock())
        try:
            async with lock:  # a second claim here waits until the adoption is applied
                claim = await self.cluster.ownership.claim(call_id)
                if claim.adopted:
                    await self._adopt(call_id, claim.previous)
        finally:
            if not lock.locked():
                self._locks.pop(call_id, None)
        if claim.mine:
            self.owned.add(call_id)
        return claim

    def _surely_mine(self, call_id: str) -> bool:
        """A call this instance took, while its own key surely lives (so nobody adopted it)."""
        instance = self.cluster.instance
        if instance.lapses != self._lapses:  # our key expired once: what we took may be theirs
            self._lapses = instance.lapses
            self.owned.clear()
        return call_id in self.owned and instance.fresh()

    def is_new(self, record: CallRecord) -> bool:
        """Saved moments ago: its creator may not have taken it yet."""
        return record.started_at > self.manager.clock.now() - self.new_call_grace_s

    async def _adopt(self, call_id: str, previous: str | None) -> None:
        record = await self.manager.store.get(call_id)
        if record is None:
            return
        decision = await self.manager.adopt(record)
        outcome = decision.outcome if decision is not None else "ended already"
        log.info("took over call %s from instance %s: %s", call_id, previous or "-", outcome)

    async def _at_owner(
        self,
        call_id: str,
        op: str,
        payload: dict[str, Any],
        here: Callable[[], Awaitable[Any]],
        timeout_s: float,
    ) -> Any:
        """`here()` when this instance owns the call (taking it from a dead owner), else the
        owner's answer to `op`."""
        if self._surely_mine(call_id):
            return await here()
        for _ in range(ATTEMPTS):
            claim = await self.take(call_id)
            if claim.mine or claim.owner is None:
                return await here()
            try:
                return await self.cluster.channel.request(
                    claim.owner, op, payload, timeout_s=timeout_s
                )
            except Unreachable:
                await self._wait_gone(call_id, claim.owner)
        raise Unavailable(
            f"the owner of call {call_id} keeps changing and none answers: retry in a few seconds"
        )

    async def _wait_gone(self, call_id: str, owner: str) -> None:
        """An owner nobody hears: wait for its key to expire (it died), else Unavailable."""
        deadline = time.monotonic() + self._owner_wait_s
        while await self.cluster.instance.alive(owner):
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"instance {owner}, which owns call {call_id}, is not answering: retry in a "
                    "few seconds"
                )
            await asyncio.sleep(POLL_S)
        log.info("instance %s (owner of call %s) is gone: taking the call over", owner, call_id)

    async def _take_new(self, call_id: str) -> None:
        await self.cluster.ownership.take_new(call_id)
        self.owned.add(call_id)

    async def _claim_at_start(self, record: CallRecord) -> bool:
        """Restart: restore only the calls whose owner is gone (the others are theirs)."""
        if self.is_new(record):
            return False  # the sweep looks again once its creator had time to take it
        claim = await self.cluster.ownership.claim(record.call_id)
        if claim.mine:
            self.owned.add(record.call_id)
        return claim.mine  # a new instance id owns nothing before it takes it

    async def _owns(self, call_id: str) -> bool:
        return await self.cluster.ownership.owner(call_id) == self.id

    def _call_ended(self, call_id: str) -> None:
        """An end listener: the call's owner key goes with it."""
        self.owned.discard(call_id)
        task = asyncio.get_running_loop().create_task(self._release(call_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self, call_id: str) -> None:
        try:
            await self.cluster.ownership.release(call_id)
        except Exception as exc:  # the key names a dead owner then: harmless, taken on demand
            log.warning("could not release call %s: %s", call_id, exc)

    async def aclose(self) -> None:
        """Let the releases under way finish (before the cluster's client closes)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---------------------------------------------------------------- served to other instances

    def ready(self) -> None:
        """Start's restore is done: serve the other instances' requests from now on."""
        self._ready.set()

    async def _settled(self, call_id: str | None) -> None:
        """What another instance sends waits until a takeover of its call is applied here
        (it learnt we own the call the moment our claim landed, before the restore did)."""
        await self._ready.wait()
        lock = self._locks.get(call_id) if call_id else None
        if lock is not None:
            async with lock:
                pass

    async def _serve_event(self, payload: dict[str, Any]) -> str:
        event = CallEvent.model_validate(payload["event"])
        await self._settled(str(payload.get("callId") or event.call_id or ""))
        return await self.manager.handle_event(event)

    async def _serve_command(self, payload: dict[str, Any]) -> dict[str, Any]:
        params = payload.get("params")
        await self._settled(_call_id_of(params))
        return await self._here(str(payload["method"]), params)

    async def _serve_end(self, payload: dict[str, Any]) -> None:
        call_id = str(payload["callId"])
        await self._settled(call_id)
        await self.manager.end_after_stream_drop(call_id, CallState(payload["reason"]))

    async def _serve_action(self, payload: dict[str, Any]) -> None:
        call_id = str(payload["callId"])
        await self._settled(call_id)
        await self._apply(call_id, payload)

    # ---------------------------------------------------------------- commands and turns

    async def _here(self, method: str, params: Any) -> dict[str, Any]:
        """Run `method` on this instance; a continue turn's id names the instance it runs on,
        so its result is asked of it wherever the client's poll lands."""
        result = await self._run_here(method, params)
        if method in (TURN_START, TURN_RESULT):
            for key in TURN_KEYS:
                if isinstance(result.get(key), str):
                    result[key] = f"{self.id}-{result[key]}"
        return result

    async def _turn_result(self, params: Any) -> dict[str, Any]:
        """`continue.result`: asked of the instance that runs the turn (its id's prefix)."""
        turn_id = _turn_id_of(params)
        if turn_id is None or "-" not in turn_id:
            return await self._here(TURN_RESULT, params)  # the local answer: bad or unknown id
        instance, _, raw = turn_id.partition("-")
        local = {**params, **{key: raw for key in TURN_KEYS if params.get(key) == turn_id}}
        if instance == self.id:
            return await self._here(TURN_RESULT, local)
        wait_ms = params.get("timeoutMs")
        wait_s = wait_ms / 1000 if isinstance(wait_ms, int) and wait_ms > 0 else 0.0
        try:
            result = await self.cluster.channel.request(
                instance,
                COMMAND_OP,
                {"method": TURN_RESULT, "params": local},
                timeout_s=min(wait_s, 60.0) + COMMAND_TIMEOUT_S,
            )
        except Unreachable:
            raise NotFound(
                f"no continue turn {turn_id!r}: the instance that ran it is gone — start another "
                "with voicecall.continue.start"
            ) from None
        return dict(result)

    # ---------------------------------------------------------------- lookups

    async def _find(self, event: CallEvent) -> CallRecord | None:
        """The call an event names: by our id, else by the carrier's (as the manager looks)."""
        store = self.manager.store
        if event.call_id:
            record = await store.get(event.call_id)
            if record is not None:
                return record
        if event.provider_call_id:
            provider = self.manager.provider.name
            return await store.find_by_provider_call_id(provider, event.provider_call_id)
        return None


def _call_id_of(params: Any) -> str | None:
    """The `callId` a command names, when it is one a store lookup can take."""
    call_id = params.get("callId") if isinstance(params, dict) else None
    if isinstance(call_id, str) and 0 < len(call_id.strip()) <= 128:
        return call_id.strip()
    return None


def _turn_id_of(params: Any) -> str | None:
    if not isinstance(params, dict):
        return None
    for key in TURN_KEYS:
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    return None
