"""A local Twilio: REST calls API, TwiML execution, signed webhooks and Media Streams.

Follows docs/carriers.md §1 and §4 "Twilio"; where it marks a fact [M] the choice made is
noted in the code with [M].

Public API (the shape the three carrier emulators share)::

    emu = TwilioEmulator(account_sid, auth_token, script=CalleeScript(), time_scale=1.0,
                         voice_url=None, dtmf_replies=(), *, voice_method="POST",
                         status_callback=None, status_callback_method="POST",
                         speech=speech_audio, webhook_transport=None)
    async with emu:                      # REST app on 127.0.0.1:<free port>
        emu.url                          # REST base to use instead of https://api.twilio.com
        emu.calls: dict[str, EmulatedCall]   # by CallSid
        emu.webhooks: WebhookLog         # every request sent to the app, in order
        call = await emu.place_inbound(from_number, to_number, script=None)
        await emu.wait_ended(call_sid, timeout=10.0)     # -> EmulatedCall
        await emu.hangup(call_sid)       # Twilio-only extra: the far end hangs up now

REST (HTTP Basic account_sid:auth_token), under /2010-04-01/Accounts/{AccountSid}:
POST Calls.json (To, From, Url | Twiml, Method, FallbackUrl, FallbackMethod, StatusCallback,
StatusCallbackEvent (repeated), StatusCallbackMethod, Timeout, TimeLimit, MachineDetection,
SendDigits (pressed once answered: in `callee.digits`) →
201; GET / POST (Url | Twiml redirect, Status=completed|canceled, StatusCallback) / DELETE
Calls/{CallSid}.json. Errors: 401 20003, 404 20404, 400 21201/21211/21212/21213/21205/21200,
400 21609 (a StatusCallback that is not a URL), 400 21220 (redirecting an ended call).

- `script` picks each call's CalleeScript: outbound calls by the `To` number, inbound calls by
  the caller's `From` number (there the simulated person is the caller). Outcomes: answer
  (after answer_delay_ms, or no-answer if that exceeds the ring Timeout), busy, no-answer (rings
  for Timeout), failed (no ringing), voicemail (answers, never speaks; AnsweredBy with AMD).
- `time_scale` (> 0) multiplies every emulated delay: answer and reply delays, ring Timeout,
  Say/Play/Pause durations, Gather timeouts, the Media Stream's 20 ms clock. HTTP timeouts
  stay real (15 s). CallDuration/duration report emulated seconds.
- `dtmf_replies`: digit strings the callee presses, in order, each time it is listened to with
  DTMF accepted (a <Gather> whose input includes dtmf, or its turn on a <Connect><Stream>);
  once they run out it says its script's lines instead.
- `voice_url`/`voice_method`/`status_callback`/`status_callback_method`: the Twilio number's
  configuration, used by `place_inbound`; inbound calls get only the `completed` callback.
- Webhooks go out one at a time per call, each awaited before the call moves on, so
  `emu.webhooks` is in call order: status initiated, ringing, answered (CallStatus in-progress)
  before the Url request; completed last. `kind`: "voice" (Url / Voice URL), "fallback",
  "status", "action" (Gather / Connect action), "redirect" (<Redirect>, REST redirect), "stream"
  (<Stream statusCallback>). Each is signed (X-Twilio-Signature) over the exact URL requested,
  with the query string for GET, and its form params. No retries (docs/carriers.md §1 names none).
- `call.hangup_cause`: hangup | end-of-document | callee-hangup | reject | application-error |
  api-hangup | api-cancel | time-limit (TimeLimit, default 4 h) | busy | no-answer | failed.
- `call.extra`: "errors" ([{code, message}], Twilio's debugger alerts: 11200, 12100, 12200,
  12300, 31920, 31950, 31951, ...), "answered_by", "audio_in" (bytearray: the µ-law the app
  streamed that the callee heard), "said_via_stream" (the callee's lines as text, in order,
  alongside their stream audio), "stream_sids".
- `callee.heard` holds Say text, "[play <url>]", "[digits <d>]", "[audio N ms]" per streamed
  utterance, and APPLICATION_ERROR_TEXT when the app broke the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from email.utils import format_datetime
from typing import Any

import httpx

from voice_call.sim.callee import CalleeScript, SimulatedCallee
from voice_call.sim.common import EmulatedCall, ScriptChooser, WebhookLog, choose_script
from voice_call.sim.control import with_control
from voice_call.sim.machine import (
    HUMAN_VERDICT_S,
    MACHINE_VERDICT_S,
    AnsweringMachine,
    answer_machine,
)
from voice_call.sim.recordings import SimRecordings
from voice_call.sim.server import LoopbackService
from voice_call.sim.transfer_target import TransferTargets
from voice_call.sim.twilio.call import Inline, LegHost, Source, TwilioLeg, now
from voice_call.sim.twilio.dial import run_dial
from voice_call.sim.twilio.markup import (
    Dial,
    DialOutcome,
    Document,
    Ended,
    Fetch,
    Stream,
    TwimlError,
    parse_twiml,
    run_document,
)
from voice_call.sim.twilio.rest import (
    API_VERSION,
    ApiError,
    CreateCall,
    Form,
    UpdateCall,
    build_rest_app,
    call_resource,
    not_found,
)
from voice_call.sim.twilio.webhooks import TwilioWebhooks
from voice_call.sim.voice import speech_audio

__all__ = ["APPLICATION_ERROR_TEXT", "TwilioEmulator"]

log = logging.getLogger("voice_call.sim.twilio.emulator")

APPLICATION_ERROR_TEXT = "We are sorry, an application error has occurred. Goodbye."
XML_TYPES = ("text/xml", "application/xml", "text/html")  # [M] html is read as TwiML too
DEFAULT_SCRIPT = CalleeScript()  # frozen, so one shared default is safe
ANSWERING = ("answer", "voicemail", "machine", "fax")
_ANSWERED_BY = {"Enable": "machine_start", "DetectMessageEnd": "machine_end_beep"}


class TwilioEmulator(LoopbackService):
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        script: ScriptChooser = DEFAULT_SCRIPT,
        time_scale: float = 1.0,
        voice_url: str | None = None,
        dtmf_replies: Sequence[str] = (),
        *,
        voice_method: str = "POST",
        status_callback: str | None = None,
        status_callback_method: str = "POST",
        speech: Callable[[str], bytes] = speech_audio,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        port: int = 0,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0 (it scales the Media Stream's 20 ms clock)")
        super().__init__(port=port)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.script = script
        self.time_scale = time_scale
        self.voice_url = voice_url
        self.voice_method = voice_method.upper()
        self.status_callback = status_callback
        self.status_callback_method = status_callback_method.upper()
        self.dtmf_replies = tuple(dtmf_replies)
        self.speech = speech
        self.calls: dict[str, EmulatedCall] = {}
        self.webhooks = WebhookLog()
        self.targets = TransferTargets()  # who a <Dial> reaches, and the log of each
        self.recordings = SimRecordings()  # the Recordings API's files, served back
        self._legs: dict[str, TwilioLeg] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._webhook_transport = webhook_transport  # e.g. many source addresses (bench/)
        self._hooks: TwilioWebhooks | None = None
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    def asgi_app(self) -> Any:
        return with_control(build_rest_app(self), self)

    async def _on_start(self) -> None:
        self._hooks = TwilioWebhooks(
            self.account_sid, self.auth_token, self.webhooks, self._webhook_transport
        )

    async def _on_stop(self) -> None:
        self._closing = True  # nothing new is sent while calls are torn down
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _after_stop(self) -> None:
        if self._hooks is not None:
            await self._hooks.close()

    @property
    def hooks(self) -> TwilioWebhooks:
        if self._hooks is None:
            raise RuntimeError("the emulator is not running: use `async with emulator:`")
        return self._hooks

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ driver API

    async def place_inbound(
        self, from_number: str, to_number: str, script: CalleeScript | None = None
    ) -> EmulatedCall:
        """A call from `from_number` to the app's number: Twilio requests the Voice URL."""
        if self.voice_url is None:
            raise ValueError("place_inbound needs the emulator's voice_url (the number's config)")
        chosen = script or choose_script(self.script, from_number)
        call = self._new_call("inbound", from_number, to_number, chosen)
        leg = TwilioLeg(
            call=call,
            source=Fetch(self.voice_url, self.voice_method, {}, "voice"),
            status_callback=self.status_callback,
            status_callback_method=self.status_callback_method,
            events=frozenset({"completed"}),  # [M] inbound calls only get `completed`
        )
        self._legs[call.id] = leg
        self._spawn(self._lifecycle(leg))
        return call

    async def wait_ended(self, call_id: str, timeout: float = 10.0) -> EmulatedCall:
        call = self.calls[call_id]
        await asyncio.wait_for(call.ended.wait(), timeout)
        return call

    async def hangup(self, call_id: str) -> None:
        """The far end hangs up now."""
        leg = self._legs[call_id]
        leg.request_stop("completed" if leg.answered else "canceled", "callee-hangup")

    def stream_status(
        self, leg: TwilioLeg, stream: Stream, sid: str, event: str, err: str | None
    ) -> None:
        """A Media Stream changed state: tell the app's statusCallback, without waiting."""
        if not self._closing:
            self._spawn(self.hooks.stream_status(leg, stream, sid, event, err))

    async def dial(self, leg: TwilioLeg, dial: Dial) -> DialOutcome:
        """A `<Dial>` on `leg`: ring the transfer target and bridge (dial.py)."""
        return await run_dial(self, leg, dial)

    # ------------------------------------------------------------------ REST backend

    def _new_call(self, direction: str, from_: str, to: str, script: CalleeScript) -> EmulatedCall:
        sid = "CA" + uuid.uuid4().hex
        call = EmulatedCall(sid, direction, from_, to, SimulatedCallee(script))
        self.calls[sid] = call
        return call

    def create_call(self, request: CreateCall) -> dict[str, Any]:
        call = self._new_call(
            "outbound", request.from_, request.to, choose_script(self.script, request.to)
        )
        source: Source = (
            Fetch(request.url, request.method, {}, "voice")
            if request.url
            else Inline(request.twiml or "")
        )
        fallback = (
            Fetch(request.fallback_url, request.fallback_method, {}, "fallback")
            if request.fallback_url
            else None
        )
        leg = TwilioLeg(
            call=call,
            source=source,
            fallback=fallback,
            status_callback=request.status_callback,
            status_callback_method=request.status_callback_method,
            events=request.status_callback_events,
            timeout_s=request.timeout,
            time_limit_s=request.time_limit,
            machine_detection=request.machine_detection,
            async_amd=request.async_amd,
            amd_callback=request.amd_callback,
            amd_callback_method=request.amd_callback_method,
            amd_timeout_s=request.amd_timeout,
            send_digits=request.send_digits,
        )
        self._legs[call.id] = leg
        self._spawn(self._lifecycle(leg))
        return self._resource(leg)

    def fetch_call(self, sid: str) -> dict[str, Any]:
        return self._resource(self._leg(sid))

    def delete_call(self, sid: str) -> None:
        leg = self._leg(sid)
        if not leg.call.ended.is_set():
            # [M] Twilio refuses to delete a live call's record.
            raise ApiError(400, 21220, "Call is not in a final state; cannot delete it")
        del self._legs[sid]

    def update_call(self, sid: str, request: UpdateCall) -> dict[str, Any]:
        leg = self._leg(sid)
        finished, answered = leg.finished, leg.answered
        if request.status_callback:
            leg.status_callback = request.status_callback
            leg.status_callback_method = request.status_callback_method
        if request.status is not None:
            if not finished and not answered:
                # [M] `completed` on a queued/ringing call cancels it, like `canceled`.
                leg.request_stop("canceled", "api-cancel")
            elif not finished and request.status == "completed":
                leg.request_stop("completed", "api-hangup")
            # `canceled` on an answered call, or anything on an ended one, changes nothing.
            return self._resource(leg)
        if request.url or request.twiml:
            if finished:
                raise ApiError(400, 21220, "Call is not in-progress. Cannot redirect.")
            source: Source = (
                Fetch(request.url, request.method, {}, "redirect")
                if request.url
                else Inline(request.twiml or "")
            )
            if not answered:
                leg.source = source  # runs once the call is answered
            else:
                leg.pending = source
                if leg.doc_task is not None:
                    leg.doc_task.cancel()
        return self._resource(leg)

    def start_recording(self, sid: str, form: Form) -> dict[str, Any]:
        """`POST …/Calls/{sid}/Recordings.json`: record the live call until it ends."""
        leg = self._leg(sid)
        if leg.finished or not leg.answered:
            raise ApiError(400, 21220, "Requested resource is not eligible for recording")
        channels = (form.get("RecordingChannels") or ["mono"])[0]
        if channels not in ("mono", "dual"):
            raise ApiError(400, 21611, f"RecordingChannels must be mono or dual, got {channels!r}")
        callback = next(iter(form.get("RecordingStatusCallback") or []), None)
        events = (form.get("RecordingStatusCallbackEvent") or ["completed"])[0].split()
        recording = self.recordings.start(sid, 2 if channels == "dual" else 1, prefix="RE")
        leg.recording_callbacks[recording.id] = (callback, set(events))
        base = f"/{API_VERSION}/Accounts/{self.account_sid}"
        return {
            "sid": recording.id,
            "account_sid": self.account_sid,
            "call_sid": sid,
            "status": "in-progress",
            "channels": 2 if channels == "dual" else 1,
            "source": "StartCallRecordingAPI",
            "start_time": format_datetime(now()),
            "duration": None,
            "uri": f"{base}/Calls/{sid}/Recordings/{recording.id}.json",
        }

    def recording_file(self, sid: str) -> bytes | None:
        return self.recordings.file(sid)

    async def _recording_callbacks(self, leg: TwilioLeg) -> None:
        """Each recording of the ended call: its RecordingStatusCallback, `completed`."""
        for recording in self.recordings.finish(leg.call.id):
            callback, events = leg.recording_callbacks.get(recording.id, (None, set()))
            if callback is None or "completed" not in events:
                continue
            url = f"{self.url}/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{recording.id}"
            params = {
                "AccountSid": self.account_sid,
                "CallSid": leg.call.id,
                "RecordingSid": recording.id,
                "RecordingUrl": url,
                "RecordingStatus": "completed",
                "RecordingDuration": str(recording.duration_s),
                "RecordingChannels": str(recording.channels),
                "RecordingSource": "StartCallRecordingAPI",
                "RecordingStartTime": format_datetime(now()),
                "ErrorCode": "0",
            }
            await self.hooks.send("recording", callback, "POST", params)

    def _leg(self, sid: str) -> TwilioLeg:
        leg = self._legs.get(sid)
        if leg is None:
            raise not_found(f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}.json")
        return leg

    def _resource(self, leg: TwilioLeg) -> dict[str, Any]:
        return call_resource(
            self.account_sid,
            leg.call,
            created=leg.created,
            updated=leg.updated,
            start_time=leg.start_time,
            end_time=leg.end_time,
            duration=leg.duration(self.time_scale) if leg.call.ended.is_set() else None,
        )

    # ------------------------------------------------------------------ a call's life

    async def _lifecycle(self, leg: TwilioLeg) -> None:
        try:
            try:
                if leg.call.direction == "inbound":
                    leg.start_time = now()
                    leg.touch("ringing")
                    ended = await self._run_twiml(leg, leg.source)
                else:
                    ended = await self._outbound(leg)
            except Exception as exc:  # an emulator bug must not leave the call hanging
                log.exception("Twilio emulator failed while running call %s", leg.call.id)
                leg.note(0, f"emulator error: {exc!r}")
                ended = Ended("failed", "emulator-error")
            await self._finish(leg, ended)
        finally:
            leg.call.ended.set()  # also when the emulator shuts down mid-call

    async def _wait(self, leg: TwilioLeg, seconds: float) -> bool:
        """Sleep `seconds` (emulated); True when a REST cancel/hangup cut it short."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(leg.wake.wait(), max(0.0, seconds) * self.time_scale)
        return leg.stop is not None

    async def _status_callback(self, leg: TwilioLeg, event: str) -> None:
        await self.hooks.status_callback(leg, event, leg.duration(self.time_scale))

    async def _outbound(self, leg: TwilioLeg) -> Ended:
        script = leg.call.callee.script
        await self._status_callback(leg, "initiated")
        if script.outcome == "failed":
            if await self._wait(leg, 0.1) and leg.stop is not None:
                return Ended(*leg.stop)
            return Ended("failed", "failed")
        leg.start_time = now()
        leg.touch("ringing")
        await self._status_callback(leg, "ringing")
        answer_s = script.answer_delay_ms / 1000
        if script.outcome == "busy":
            ring_s, result = min(answer_s, leg.timeout_s), "busy"
        elif script.outcome in ANSWERING and answer_s <= leg.timeout_s:
            ring_s, result = answer_s, "answered"
        else:  # no-answer, or answering after the ring Timeout (Twilio's ~5 s slack not modelled)
            ring_s, result = leg.timeout_s, "no-answer"
        if await self._wait(leg, ring_s) and leg.stop is not None:
            return Ended(*leg.stop)
        if result != "answered":
            return Ended(result, result)
        if leg.machine_detection and leg.async_amd:
            self._spawn(self._async_amd(leg))
        elif leg.machine_detection:
            voicemail = script.outcome == "voicemail"
            leg.call.extra["answered_by"] = (
                _ANSWERED_BY[leg.machine_detection] if voicemail else "human"
            )
        leg.answer(self.time_scale)
        answer_machine(script, leg.call.extra, self.time_scale)  # a machine starts its greeting
        if leg.send_digits:
            leg.call.callee.digits.append(leg.send_digits)  # SendDigits, pressed on connect
        await self._status_callback(leg, "answered")
        return await self._run_twiml(leg, leg.source)

    async def _async_amd(self, leg: TwilioLeg) -> None:
        """AsyncAmd: the call runs its TwiML while the detector listens; then the verdict."""
        answered_by, wait_s = self._verdict(leg)
        if await self._wait(leg, wait_s) or leg.finished or leg.amd_callback is None:
            return
        leg.call.extra["amd_answered_by"] = answered_by
        params = {
            "AccountSid": self.account_sid,
            "CallSid": leg.call.id,
            "AnsweredBy": answered_by,
            "MachineDetectionDuration": str(round(wait_s * 1000)),
        }
        await self.hooks.send("amd", leg.amd_callback, leg.amd_callback_method, params)

    def _verdict(self, leg: TwilioLeg) -> tuple[str, float]:
        """AnsweredBy and how long (emulated seconds) the detector took to say it."""
        machine = leg.call.extra.get("machine")
        if not isinstance(machine, AnsweringMachine):
            return "human", HUMAN_VERDICT_S
        if machine.fax:
            return "fax", HUMAN_VERDICT_S
        if leg.machine_detection == "Enable":
            return "machine_start", min(machine.greeting_s, MACHINE_VERDICT_S)
        if machine.greeting_s > leg.amd_timeout_s:  # still talking at MachineDetectionTimeout
            return "machine_end_other", leg.amd_timeout_s
        return "machine_end_beep", machine.greeting_s

    async def _run_twiml(self, leg: TwilioLeg, source: Source) -> Ended:
        """Fetch and run documents until the call ends; a REST redirect restarts the loop."""
        while True:
            if leg.stop is not None:
                return Ended(*leg.stop)
            task: asyncio.Task[Fetch | Ended] = asyncio.create_task(self._step(leg, source))
            leg.doc_task = task
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                task.cancel()  # and let it finish, so a stream says `stop` before we go
                await asyncio.gather(task, return_exceptions=True)
                raise
            finally:
                leg.doc_task = None
            if leg.stop is not None:
                return Ended(*leg.stop)
            if task.cancelled():
                if leg.pending is None:
                    return Ended("completed", "hangup")
                source, leg.pending = leg.pending, None
                continue
            outcome = task.result()
            if isinstance(outcome, Ended):
                return outcome
            source = outcome

    async def _step(self, leg: TwilioLeg, source: Source) -> Fetch | Ended:
        doc = await self._load(leg, source)
        if isinstance(doc, Ended):
            return doc
        return await run_document(LegHost(self, leg), doc)

    async def _finish(self, leg: TwilioLeg, ended: Ended) -> None:
        call = leg.call
        if leg.time_limit is not None:
            leg.time_limit.cancel()
        call.ended_at = time.time()
        call.hangup_cause = ended.reason
        call.callee.hung_up = True
        leg.end_time = now()
        leg.touch(ended.status)
        await self._status_callback(leg, "completed")
        await self._recording_callbacks(leg)
        call.ended.set()

    # ------------------------------------------------------------------ TwiML documents

    def _application_error(self, leg: TwilioLeg, code: int, message: str) -> Ended:
        """Twilio's answer to a broken app: log the error, say so, hang up."""
        leg.note(code, message)
        leg.answer(self.time_scale)
        leg.call.callee.hear(APPLICATION_ERROR_TEXT)
        return Ended("completed", "application-error")

    async def _load(self, leg: TwilioLeg, source: Source) -> Document | Ended:
        if isinstance(source, Inline):
            try:
                return parse_twiml(source.twiml)
            except TwimlError as exc:
                return self._application_error(leg, exc.code, exc.message)
        hook, content_type = await self.hooks.fetch_twiml(leg, source)
        failed = hook.status_code is None or not 200 <= hook.status_code < 300
        if failed and source.kind == "voice" and leg.fallback is not None:
            extra = {"ErrorCode": "11200", "ErrorUrl": source.url}
            fallback = Fetch(leg.fallback.url, leg.fallback.method, extra, "fallback")
            return await self._load(leg, fallback)
        if failed:
            return self._application_error(
                leg, 11200, f"HTTP retrieval failure: {hook.status_code} from {source.url}"
            )
        if content_type not in XML_TYPES:
            return self._application_error(leg, 12300, f"Invalid Content-Type: {content_type}")
        try:
            return parse_twiml(hook.response_body, url=source.url)
        except TwimlError as exc:
            return self._application_error(leg, exc.code, exc.message)
