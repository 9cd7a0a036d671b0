"""The mock provider: no network, a simulated callee, and a ledger that plays the carrier.

Dialing writes to an append-only ledger file (the carrier's memory, which outlives our process),
so after a crash `get_call_status` can still say which calls are live and tests can check that
no call was dialed twice. The seed's mock webhook also works: POST `{"event": {...}}` or
`{"events": [...]}` of normalised events to `serve.path`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from voice_call.clock import Clock
from voice_call.config import Config
from voice_call.models import (
    AnsweredBy,
    CallEvent,
    CallRecord,
    CallState,
    EventType,
    TransferStatus,
)
from voice_call.providers.base import (
    DialRequest,
    DialResult,
    EventSink,
    ProviderError,
    ProviderStatus,
    TransferRequest,
    Verification,
    WebhookError,
    WebhookRequest,
    WebhookResult,
)
from voice_call.sim.callee import CalleeScript, SimulatedCallee
from voice_call.sim.machine import HUMAN_VERDICT_S, AnsweringMachine, answer_machine
from voice_call.sim.recordings import SimRecordings
from voice_call.sim.transfer_target import TransferTargets

log = logging.getLogger("voice_call.mock")
MAX_EVENTS_PER_WEBHOOK = 100
DEFAULT_RING_TIMEOUT_MS = 30_000  # ringTimeoutMs's default
_OUTCOME_ENDS = {
    "busy": CallState.BUSY,
    "no-answer": CallState.NO_ANSWER,
    "voicemail": CallState.VOICEMAIL,
    "failed": CallState.FAILED,
}


class MockLedger:
    """Append-only JSON lines: {"op": "dial"|"hangup"|"ended", "providerCallId", ...}."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def append(self, op: str, provider_call_id: str, **data: Any) -> None:
        if self.path is None:
            return
        line = json.dumps({"op": op, "providerCallId": provider_call_id, **data})
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def entries(self) -> list[dict[str, Any]]:
        if self.path is None or not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a crash mid-write
        return rows


class MockProvider:
    name = "mock"
    required_headers: tuple[tuple[str, ...], ...] = ()
    delivers_notify_inline = False
    reports_playback_end = False
    queues_speech = True
    detects_greeting_end = True  # the mock's detector hears the beep

    def __init__(
        self,
        clock: Clock,
        script: CalleeScript | None = None,
        ledger_path: Path | None = None,
        *,
        ring_timeout_ms: int = DEFAULT_RING_TIMEOUT_MS,
        recordings_dir: Path | None = None,
    ) -> None:
        self.clock = clock
        self.script = script or CalleeScript()
        self.ring_timeout_ms = ring_timeout_ms  # ringTimeoutMs: unanswered by then, no-answer
        self.ledger = MockLedger(ledger_path)
        self.callees: dict[str, SimulatedCallee] = {}
        self.machines: dict[str, AnsweringMachine] = {}  # by provider call id, for tests
        self.targets = TransferTargets()  # who a transfer reaches, and the log of each
        self.recordings = SimRecordings()  # start_recording's, written when the call ends
        self.recordings_dir = recordings_dir
        self._sink: EventSink | None = None

    def attach(self, sink: EventSink) -> None:
        self._sink = sink

    def attach_media(self, media: object) -> None:
        return None  # the mock callee talks through events, not a stream

    def set_webhook_url(self, url: str, *, pinned: bool = False) -> None:
        return None  # the mock carrier calls back in-process

    def webhook_response(
        self, request: WebhookRequest, result: WebhookResult, outcomes: list[str]
    ) -> WebhookResult:
        return result

    # -- the simulated carrier -------------------------------------------------------------

    def _callee(self, provider_call_id: str) -> SimulatedCallee:
        # A call restored after a restart is still on the line: the callee picks up where it is.
        return self.callees.setdefault(provider_call_id, SimulatedCallee(self.script))

    def _later(self, delay_ms: float, event: CallEvent) -> None:
        self.clock.call_later(delay_ms / 1000, lambda: self._emit_soon(event))

    def _emit_soon(self, event: CallEvent) -> None:
        import asyncio

        if self._sink is None:
            return
        task = asyncio.ensure_future(self._sink(event))
        task.add_done_callback(_log_failure)

    async def initiate_call(self, request: DialRequest) -> DialResult:
        pid = f"mock-{request.call_id}"
        self.ledger.append("dial", pid, callId=request.call_id, to=request.to_number)
        self._callee(pid)
        script = self.script
        base = {"call_id": request.call_id, "provider_call_id": pid}
        self._later(0, CallEvent(type=EventType.RINGING, **base))
        picks_up = script.outcome in ("answer", "voicemail", "machine", "fax")
        too_late = picks_up and script.answer_delay_ms > self.ring_timeout_ms
        if too_late or script.outcome == "no-answer":
            # Rings until ringTimeoutMs, as a carrier gives up on a phone nobody answers.
            self.ledger.append("ended", pid, reason=CallState.NO_ANSWER.value)
            ended = CallEvent(type=EventType.ENDED, reason=CallState.NO_ANSWER, **base)
            self._later(self.ring_timeout_ms, ended)
        elif script.outcome in ("answer", "machine", "fax"):
            self._later(script.answer_delay_ms, CallEvent(type=EventType.ANSWERED, **base))
            self._detect(request, script, pid, base)
        else:
            reason = _OUTCOME_ENDS.get(script.outcome, CallState.FAILED)
            self.ledger.append("ended", pid, reason=reason.value)
            self._later(
                script.answer_delay_ms, CallEvent(type=EventType.ENDED, reason=reason, **base)
            )
        return DialResult(provider_call_id=pid)

    def _detect(
        self, request: DialRequest, script: CalleeScript, pid: str, base: dict[str, str]
    ) -> None:
        """The machine greets from the answer on; with `amd`, the verdict and the beep follow."""
        if script.outcome in ("machine", "fax"):
            extra: dict[str, Any] = {}
            self.clock.call_later(
                script.answer_delay_ms / 1000, lambda: self._greet(pid, script, extra)
            )
        if request.amd is None:
            return
        answered_by = {"machine": AnsweredBy.MACHINE, "fax": AnsweredBy.FAX}.get(
            script.outcome, AnsweredBy.HUMAN
        )
        verdict_ms = script.answer_delay_ms + HUMAN_VERDICT_S * 1000
        amd = CallEvent(type=EventType.AMD, answered_by=answered_by, **base)
        self._later(verdict_ms, amd)
        if answered_by == AnsweredBy.MACHINE:
            beep = CallEvent(type=EventType.MACHINE_GREETING_ENDED, **base)
            self._later(script.answer_delay_ms + script.greeting_ms, beep)

    def _greet(self, pid: str, script: CalleeScript, extra: dict[str, Any]) -> None:
        machine = answer_machine(script, extra, now=self.clock.now)
        if machine is not None:
            self.machines[pid] = machine

    def detection_ms(self, timeout_ms: int) -> int:
        return timeout_ms

    async def leave_voicemail(self, call: CallRecord, text: str) -> bool:
        pid = call.provider_call_id or f"mock-{call.call_id}"
        machine = self.machines.get(pid)
        if machine is not None:
            machine.begin(text)
        self._callee(pid).hear(text)
        base = {"call_id": call.call_id, "provider_call_id": pid}
        self._later(self.script.reply_delay_ms, CallEvent(type=EventType.PLAYBACK_ENDED, **base))
        return False

    async def answer(self, call: CallRecord) -> None:
        return None

    async def hangup(self, call: CallRecord, reason: str) -> None:
        if call.provider_call_id:
            self.ledger.append("hangup", call.provider_call_id, reason=reason)
            self._callee(call.provider_call_id).hung_up = True
            self._recorded(call.call_id, call.provider_call_id)

    async def start_recording(self, call: CallRecord, channels: str) -> None:
        """The mock carrier records until the call ends; the file is written locally then
        (a stand-in of the call's length) and reported with its path, so it runs offline."""
        pid = call.provider_call_id or f"mock-{call.call_id}"
        self.ledger.append("record", pid, channels=channels)
        self.recordings.start(pid, 2 if channels == "dual" else 1)

    async def fetch_recording(self, url: str) -> tuple[bytes, str]:
        raise ProviderError("the mock carrier's recordings are local files: nothing to fetch")

    def _recorded(self, call_id: str, pid: str) -> None:
        for recording in self.recordings.finish(pid):
            event = CallEvent(
                type=EventType.RECORDING,
                call_id=call_id,
                provider_call_id=pid,
                recording_duration_s=recording.duration_s,
                recording_status="completed",
                recording_path=self._write(call_id, recording.id, recording.audio),
                dedupe_key=f"mock-recording:{recording.id}",
            )
            self._emit_soon(event)

    def _write(self, call_id: str, name: str, audio: bytes) -> str | None:
        if self.recordings_dir is None:
            return None
        self.recordings_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.recordings_dir / f"{call_id}-{name}.wav"
        path.write_bytes(audio)
        return str(path)

    async def speak(self, call: CallRecord, text: str) -> None:
        pid = call.provider_call_id or f"mock-{call.call_id}"
        callee = self._callee(pid)
        if pid in self.machines:
            self.machines[pid].begin(text)
        if callee.hear(text) and not callee.hung_up:
            callee.hung_up = True
            self.ledger.append("ended", pid, reason=CallState.HANGUP_USER.value)
            event = CallEvent(
                type=EventType.ENDED,
                call_id=call.call_id,
                provider_call_id=pid,
                reason=CallState.HANGUP_USER,
            )
            self._later(self.script.reply_delay_ms, event)
            self._recorded(call.call_id, pid)

    async def transfer(self, call: CallRecord, request: TransferRequest) -> None:
        """The mock carrier rings the target as scripted (`targets`), then reports it."""
        pid = call.provider_call_id or f"mock-{call.call_id}"
        self.ledger.append("transfer", pid, to=request.target, mode=request.mode)
        link = self.targets.open(pid, request.target, request.mode)
        if request.announce:
            link.announced.append(request.announce)
        script = self.targets.script(request.target)
        base = {"call_id": call.call_id, "provider_call_id": pid}
        target = {"transfer_target": request.target}
        if script.outcome != "answer":
            link.status = script.outcome
            status = TransferStatus(script.outcome)
            self._later(
                script.answer_delay_ms,
                CallEvent(type=EventType.TRANSFER, transfer_status=status, **base, **target),
            )
            return
        if request.summary:
            link.heard.append(request.summary)
        self.targets.bridged(link)
        self._callee(pid).hung_up = True  # the caller now talks to the target, not the bot
        self._later(
            script.answer_delay_ms,
            CallEvent(
                type=EventType.TRANSFER,
                transfer_status=TransferStatus.BRIDGED,
                **base,
                **target,
            ),
        )

    async def transfer_answered(self, call: CallRecord, leg: str, request: TransferRequest) -> None:
        return None  # the mock target hears the summary at once

    async def transfer_failed(self, call: CallRecord) -> None:
        return None  # the mock carrier took nothing away

    async def start_listening(self, call: CallRecord, turn_token: str | None) -> None:
        pid = call.provider_call_id or f"mock-{call.call_id}"
        line = self._callee(pid).next_line()
        if line is None:
            return
        base = {"call_id": call.call_id, "provider_call_id": pid, "turn_token": turn_token}
        half = self.script.reply_delay_ms / 2
        partial = line.split(" ")[0]
        self._later(
            half, CallEvent(type=EventType.SPEECH, transcript=partial, is_final=False, **base)
        )
        self._later(
            self.script.reply_delay_ms,
            CallEvent(
                type=EventType.SPEECH, transcript=line, is_final=True, confidence=0.93, **base
            ),
        )

    async def stop_listening(self, call: CallRecord) -> None:
        return None

    async def send_dtmf(self, call: CallRecord, digits: str) -> None:
        self._callee(call.provider_call_id or f"mock-{call.call_id}").digits.append(digits)

    async def get_call_status(self, provider_call_id: str) -> ProviderStatus:
        """From the ledger; ids naming stale/ended/completed are terminal (seed convention)."""
        if any(word in provider_call_id for word in ("stale", "ended", "completed")):
            return ProviderStatus(status="completed", terminal=True)
        ops = [e for e in self.ledger.entries() if e.get("providerCallId") == provider_call_id]
        if not ops:
            return ProviderStatus(status="unknown", terminal=False, unknown=True)
        last = ops[-1]
        if last["op"] in ("hangup", "ended"):
            return ProviderStatus(status=_carrier_word(last.get("reason")), terminal=True)
        return ProviderStatus(status="in-progress", terminal=False)

    # -- webhooks ----------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        # No signature on mock: the request key is a digest of what was sent, so a replay of
        # the same request is still recognised.
        digest = hashlib.sha256()
        for part in (request.method.encode(), request.url.encode(), request.body):
            digest.update(part + b"\n")
        return Verification(ok=True, request_key="mock:" + digest.hexdigest())

    def parse_webhook(
        self, request: WebhookRequest, request_key: str | None = None
    ) -> WebhookResult:
        try:
            payload = json.loads(request.body)
        except (ValueError, RecursionError) as exc:  # bad UTF-8/JSON, huge ints, deep nesting
            raise WebhookError(f"body is not valid JSON: {exc}") from None
        raw = _raw_events(payload)
        events = []
        for index, item in enumerate(raw):
            try:
                event = CallEvent.model_validate(item)
            except ValidationError as exc:
                raise WebhookError(f"events[{index}]: {_first_error(exc)}") from None
            if not (event.call_id or event.provider_call_id):
                raise WebhookError(f"events[{index}]: callId or providerCallId is required")
            if event.dedupe_key is None and request_key:
                event = event.model_copy(update={"dedupe_key": f"{request_key}:{index}"})
            events.append(event)
        return WebhookResult(events=events, content_type="application/json", body="")

    async def close(self) -> None:
        self.callees.clear()


def _raw_events(payload: Any) -> list[Any]:
    if not isinstance(payload, dict):
        raise WebhookError('body must be an object: {"event": {...}} or {"events": [...]}')
    if ("event" in payload) == ("events" in payload) or len(payload) != 1:
        raise WebhookError('body must have exactly one key: "event" or "events"')
    raw = [payload["event"]] if "event" in payload else payload["events"]
    if not isinstance(raw, list) or not raw:
        raise WebhookError('"events" must be a non-empty list')
    if len(raw) > MAX_EVENTS_PER_WEBHOOK:
        raise WebhookError(f"at most {MAX_EVENTS_PER_WEBHOOK} events per request")
    return raw


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


def _carrier_word(reason: Any) -> str:
    return {"busy": "busy", "no-answer": "no-answer", "failed": "failed"}.get(
        str(reason), "completed"
    )


def _log_failure(task: Any) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("mock event delivery failed: %r", task.exception())


def build(config: Config, clock: Clock, home: Path) -> MockProvider:
    mock = config.mock
    script = CalleeScript(
        outcome=mock.outcome,
        answer_delay_ms=mock.answer_delay_ms,
        replies=tuple(mock.replies),
        reply_delay_ms=mock.reply_delay_ms,
        hangup_after_turns=mock.hangup_after_turns,
        silent=mock.silent,
        greeting_ms=mock.greeting_ms,
    )
    return MockProvider(
        clock,
        script,
        ledger_path=home / "mock-carrier.jsonl",
        ring_timeout_ms=config.ring_timeout_ms,
        recordings_dir=home / "recordings",
    )
