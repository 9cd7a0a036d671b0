"""A local Twilio: REST calls API, TwiML execution, signed webhooks and Media Streams.

Follows docs/carriers.md §1 and §4 "Twilio"; where it marks a fact [M] the choice made is
noted in the code with [M].

Public API (the shape the three carrier emulators share)::

    emu = TwilioEmulator(account_sid, auth_token, script=CalleeScript(), time_scale=1.0,
                         voice_url=None, dtmf_replies=(), *, voice_method="POST",
                         status_callback=None, status_callback_method="POST",
                         speech=speech_audio)
    async with emu:                      # REST app on 127.0.0.1:<free port>
        emu.url                          # REST base to use instead of https://api.twilio.com
        emu.calls: dict[str, EmulatedCall]   # by CallSid
        emu.webhooks: WebhookLog         # every request sent to the app, in order
        call = await emu.place_inbound(from_number, to_number, script=None)
        await emu.wait_ended(call_sid, timeout=10.0)     # -> EmulatedCall
        await emu.hangup(call_sid)       # Twilio-only extra: the far end hangs up now

REST (HTTP Basic account_sid:auth_token), under /2010-04-01/Accounts/{AccountSid}:
POST Calls.json (To, From, Url | Twiml, Method, FallbackUrl, FallbackMethod, StatusCallback,
StatusCallbackEvent (repeated), StatusCallbackMethod, Timeout, TimeLimit, MachineDetection) →
201; GET / POST (Url | Twiml redirect, Status=completed|canceled, StatusCallback) / DELETE
Calls/{CallSid}.json. Errors: 401 20003, 404 20404, 400 21201/21211/21212/21213/21205/21200,
400 21220 (redirecting an ended call).

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
  with the query string for GET, and its form params. No retries (§1 names none).
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
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import httpx

from voice_call.asgi_server import BackgroundServer
from voice_call.security.signatures.twilio import HEADER, compute_signature
from voice_call.sim.callee import CalleeScript, SimulatedCallee
from voice_call.sim.common import (
    EmulatedCall,
    ScriptChooser,
    SentWebhook,
    WebhookLog,
    choose_script,
)
from voice_call.sim.twilio.markup import (
    Document,
    Ended,
    Fetch,
    Stream,
    TwimlError,
    parse_twiml,
    run_document,
    speaking_seconds,
)
from voice_call.sim.twilio.rest import (
    API_VERSION,
    DEFAULT_TIME_LIMIT_S,
    ApiError,
    CreateCall,
    UpdateCall,
    build_rest_app,
    call_resource,
    not_found,
)
from voice_call.sim.twilio.stream import MediaStreamSession, StreamPeer
from voice_call.sim.voice import speech_audio

log = logging.getLogger("voice_call.sim.twilio.emulator")

WEBHOOK_TIMEOUT_S = 15.0  # [M] Twilio's voice webhook timeout; real seconds, never scaled
APPLICATION_ERROR_TEXT = "We are sorry, an application error has occurred. Goodbye."
DTMF_SECONDS_PER_DIGIT = 0.1
XML_TYPES = ("text/xml", "application/xml", "text/html")  # [M] html is read as TwiML too
DEFAULT_SCRIPT = CalleeScript()  # frozen, so one shared default is safe
_ANSWERED_BY = {"Enable": "machine_start", "DetectMessageEnd": "machine_end_beep"}


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class _Inline:
    twiml: str


_Source = Fetch | _Inline


@dataclass
class _Leg:
    """Twilio's bookkeeping for one call, beside the shared EmulatedCall."""

    call: EmulatedCall
    source: _Source  # the TwiML to run once answered
    fallback: Fetch | None = None
    status_callback: str | None = None
    status_callback_method: str = "POST"
    events: frozenset[str] = frozenset({"completed"})
    timeout_s: float = 60.0
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    machine_detection: str | None = None
    created: datetime = field(default_factory=_now)
    updated: datetime = field(default_factory=_now)
    start_time: datetime | None = None
    end_time: datetime | None = None
    sequence: int = 0
    dtmf_used: int = 0
    stop: tuple[str, str] | None = None  # (final status, reason) requested from outside
    pending: _Source | None = None  # a REST redirect waiting to replace the running TwiML
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    doc_task: asyncio.Task[Fetch | Ended] | None = None
    time_limit: asyncio.TimerHandle | None = None

    def touch(self, status: str | None = None) -> None:
        if status is not None:
            self.call.status = status
        self.updated = _now()


class TwilioEmulator:
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
        port: int = 0,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0 (it scales the Media Stream's 20 ms clock)")
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
        self._legs: dict[str, _Leg] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: BackgroundServer | None = None
        self._port = port
        self._http: httpx.AsyncClient | None = None
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running: use `async with emulator:`")
        return self._server.url

    async def __aenter__(self) -> TwilioEmulator:
        self._http = httpx.AsyncClient(trust_env=False, timeout=WEBHOOK_TIMEOUT_S)
        self._server = BackgroundServer(build_rest_app(self), lifespan="off", port=self._port)
        await self._server.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True  # nothing new is sent while calls are torn down
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.stop()
        if self._http is not None:
            await self._http.aclose()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) * self.time_scale)

    # ------------------------------------------------------------------ driver API

    async def place_inbound(
        self, from_number: str, to_number: str, script: CalleeScript | None = None
    ) -> EmulatedCall:
        """A call from `from_number` to the app's number: Twilio requests the Voice URL."""
        if self.voice_url is None:
            raise ValueError("place_inbound needs the emulator's voice_url (the number's config)")
        chosen = script or choose_script(self.script, from_number)
        call = self._new_call("inbound", from_number, to_number, chosen)
        leg = _Leg(
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
        answered = leg.call.answered_at is not None
        self._request_stop(leg, "completed" if answered else "canceled", "callee-hangup")

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
        source: _Source = (
            Fetch(request.url, request.method, {}, "voice")
            if request.url
            else _Inline(request.twiml or "")
        )
        fallback = (
            Fetch(request.fallback_url, request.fallback_method, {}, "fallback")
            if request.fallback_url
            else None
        )
        leg = _Leg(
            call=call,
            source=source,
            fallback=fallback,
            status_callback=request.status_callback,
            status_callback_method=request.status_callback_method,
            events=request.status_callback_events,
            timeout_s=request.timeout,
            time_limit_s=request.time_limit,
            machine_detection=request.machine_detection,
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
        finished = leg.call.ended.is_set() or leg.stop is not None
        answered = leg.call.answered_at is not None
        if request.status_callback:
            leg.status_callback = request.status_callback
            leg.status_callback_method = request.status_callback_method
        if request.status is not None:
            if not finished and not answered:
                # [M] `completed` on a queued/ringing call cancels it, like `canceled`.
                self._request_stop(leg, "canceled", "api-cancel")
            elif not finished and request.status == "completed":
                self._request_stop(leg, "completed", "api-hangup")
            # `canceled` on an answered call, or anything on an ended one, changes nothing.
            return self._resource(leg)
        if request.url or request.twiml:
            if finished:
                raise ApiError(400, 21220, "Call is not in-progress. Cannot redirect.")
            source: _Source = (
                Fetch(request.url, request.method, {}, "redirect")
                if request.url
                else _Inline(request.twiml or "")
            )
            if not answered:
                leg.source = source  # runs once the call is answered
            else:
                leg.pending = source
                if leg.doc_task is not None:
                    leg.doc_task.cancel()
        return self._resource(leg)

    def _leg(self, sid: str) -> _Leg:
        leg = self._legs.get(sid)
        if leg is None:
            raise not_found(f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}.json")
        return leg

    def _resource(self, leg: _Leg) -> dict[str, Any]:
        return call_resource(
            self.account_sid,
            leg.call,
            created=leg.created,
            updated=leg.updated,
            start_time=leg.start_time,
            end_time=leg.end_time,
            duration=self._duration(leg) if leg.call.ended.is_set() else None,
        )

    def _duration(self, leg: _Leg) -> int:
        """Emulated seconds from answer to end, as Twilio's CallDuration (rounded up [M])."""
        call = leg.call
        if call.answered_at is None or call.ended_at is None:
            return 0
        return math.ceil((call.ended_at - call.answered_at) / self.time_scale - 1e-6)

    def _request_stop(self, leg: _Leg, status: str, reason: str) -> None:
        if leg.stop is not None or leg.call.ended.is_set():
            return
        leg.stop = (status, reason)
        leg.touch(status)
        leg.wake.set()
        if leg.doc_task is not None:
            leg.doc_task.cancel()

    # ------------------------------------------------------------------ a call's life

    async def _lifecycle(self, leg: _Leg) -> None:
        try:
            try:
                if leg.call.direction == "inbound":
                    leg.start_time = _now()
                    leg.touch("ringing")
                    ended = await self._run_twiml(leg, leg.source)
                else:
                    ended = await self._outbound(leg)
            except Exception as exc:  # an emulator bug must not leave the call hanging
                log.exception("Twilio emulator failed while running call %s", leg.call.id)
                self._note(leg, 0, f"emulator error: {exc!r}")
                ended = Ended("failed", "emulator-error")
            await self._finish(leg, ended)
        finally:
            leg.call.ended.set()  # also when the emulator shuts down mid-call

    async def _wait(self, leg: _Leg, seconds: float) -> bool:
        """Sleep `seconds` (emulated); True when a REST cancel/hangup cut it short."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(leg.wake.wait(), max(0.0, seconds) * self.time_scale)
        return leg.stop is not None

    async def _outbound(self, leg: _Leg) -> Ended:
        script = leg.call.callee.script
        await self._status_callback(leg, "initiated")
        if script.outcome == "failed":
            if await self._wait(leg, 0.1) and leg.stop is not None:
                return Ended(*leg.stop)
            return Ended("failed", "failed")
        leg.start_time = _now()
        leg.touch("ringing")
        await self._status_callback(leg, "ringing")
        answer_s = script.answer_delay_ms / 1000
        if script.outcome == "busy":
            ring_s, result = min(answer_s, leg.timeout_s), "busy"
        elif script.outcome in ("answer", "voicemail") and answer_s <= leg.timeout_s:
            ring_s, result = answer_s, "answered"
        else:  # no-answer, or answering after the ring Timeout (Twilio's ~5 s slack not modelled)
            ring_s, result = leg.timeout_s, "no-answer"
        if await self._wait(leg, ring_s) and leg.stop is not None:
            return Ended(*leg.stop)
        if result != "answered":
            return Ended(result, result)
        if leg.machine_detection:
            voicemail = script.outcome == "voicemail"
            leg.call.extra["answered_by"] = (
                _ANSWERED_BY[leg.machine_detection] if voicemail else "human"
            )
        self._answer(leg)
        await self._status_callback(leg, "answered")
        return await self._run_twiml(leg, leg.source)

    def _answer(self, leg: _Leg) -> None:
        if leg.call.answered_at is None:
            leg.call.answered_at = time.time()
            leg.touch("in-progress")
            leg.time_limit = asyncio.get_running_loop().call_later(
                leg.time_limit_s * self.time_scale,
                lambda: self._request_stop(leg, "completed", "time-limit"),
            )

    async def _run_twiml(self, leg: _Leg, source: _Source) -> Ended:
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

    async def _step(self, leg: _Leg, source: _Source) -> Fetch | Ended:
        doc = await self._load(leg, source)
        if isinstance(doc, Ended):
            return doc
        return await run_document(_Host(self, leg), doc)

    async def _finish(self, leg: _Leg, ended: Ended) -> None:
        call = leg.call
        if leg.time_limit is not None:
            leg.time_limit.cancel()
        call.ended_at = time.time()
        call.hangup_cause = ended.reason
        call.callee.hung_up = True
        leg.end_time = _now()
        leg.touch(ended.status)
        await self._status_callback(leg, "completed")
        call.ended.set()

    # ------------------------------------------------------------------ TwiML documents

    def _note(self, leg: _Leg, code: int, message: str) -> None:
        leg.call.extra.setdefault("errors", []).append({"code": code, "message": message})

    def _application_error(self, leg: _Leg, code: int, message: str) -> Ended:
        """Twilio's answer to a broken app: log the error, say so, hang up."""
        self._note(leg, code, message)
        self._answer(leg)
        leg.call.callee.hear(APPLICATION_ERROR_TEXT)
        return Ended("completed", "application-error")

    async def _load(self, leg: _Leg, source: _Source) -> Document | Ended:
        if isinstance(source, _Inline):
            try:
                return parse_twiml(source.twiml)
            except TwimlError as exc:
                return self._application_error(leg, exc.code, exc.message)
        hook, content_type = await self._twiml_request(leg, source)
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

    async def _twiml_request(self, leg: _Leg, fetch: Fetch) -> tuple[SentWebhook, str]:
        params = {**self._call_params(leg), **fetch.params}
        return await self._send(fetch.kind, fetch.url, fetch.method, params)

    def _call_params(self, leg: _Leg) -> dict[str, str]:
        """The fields of every voice request (§1.2)."""
        call = leg.call
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.id,
            "CallStatus": call.status,
            "Called": call.to_number,
            "Caller": call.from_number,
            "Direction": "inbound" if call.direction == "inbound" else "outbound-api",
            "From": call.from_number,
            "To": call.to_number,
        }
        if "answered_by" in call.extra:
            params["AnsweredBy"] = call.extra["answered_by"]
        return params

    # ------------------------------------------------------------------ webhooks

    async def _status_callback(self, leg: _Leg, event: str) -> None:
        """One status callback, awaited: the app sees them in order, before the next step."""
        if leg.status_callback is None or event not in leg.events:
            return
        params = self._call_params(leg)
        # [M] initiated → "initiated", answered → "in-progress", completed → the final status.
        progress = {"initiated": "initiated", "ringing": "ringing", "answered": "in-progress"}
        params["CallStatus"] = progress.get(event, leg.call.status)
        params["CallbackSource"] = "call-progress-events"
        params["SequenceNumber"] = str(leg.sequence)
        params["Timestamp"] = format_datetime(_now())
        if event == "completed":
            params["CallDuration"] = str(self._duration(leg))
        leg.sequence += 1
        await self._send("status", leg.status_callback, leg.status_callback_method, params)

    def _stream_status(
        self, leg: _Leg, stream: Stream, sid: str, event: str, err: str | None
    ) -> None:
        if not stream.status_callback or self._closing:
            return
        params = {
            "AccountSid": self.account_sid,
            "CallSid": leg.call.id,
            "StreamSid": sid,
            "StreamName": stream.name or sid,
            "StreamEvent": event,
            "Timestamp": format_datetime(_now()),
        }
        if err:
            params["StreamError"] = err
        self._spawn(
            self._send("stream", stream.status_callback, stream.status_callback_method, params)
        )

    async def _send(
        self, kind: str, url: str, method: str, params: dict[str, str]
    ) -> tuple[SentWebhook, str]:
        """One signed request to the app; logged whatever happens. Returns (log entry, type)."""
        assert self._http is not None
        if method == "GET":
            target = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
            signature = compute_signature(self.auth_token, target)
            body = None
        else:
            target, body = url, urlencode(params)
            signature = compute_signature(self.auth_token, url, params)
        headers = {
            HEADER: signature,
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "X-Home-Region": "us1",
        }
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        hook = SentWebhook(url=target, params=dict(params), headers=headers, kind=kind)
        content_type = ""
        try:
            response = await self._http.request(method, target, content=body, headers=headers)
            hook.status_code = response.status_code
            hook.response_body = response.text
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        except httpx.HTTPError as exc:
            # Twilio does not retry voice webhooks by default (§1.2 says nothing of retries).
            log.info("Twilio emulator: %s %s failed: %s", method, target, exc)
        await self.webhooks.add(hook)
        return hook, content_type


class _Host:
    """One call's side of running TwiML: time, the callee, and Media Streams."""

    def __init__(self, emu: TwilioEmulator, leg: _Leg) -> None:
        self.emu = emu
        self.leg = leg
        self.callee = leg.call.callee

    @property
    def answered(self) -> bool:
        return self.leg.call.answered_at is not None

    def answer(self) -> None:
        self.emu._answer(self.leg)

    async def sleep(self, seconds: float) -> None:
        await self.emu._sleep(seconds)

    def hear(self, text: str) -> bool:
        return self.callee.hear(text)

    def note(self, code: int, message: str) -> None:
        self.emu._note(self.leg, code, message)

    def _next_digits(self) -> str | None:
        replies = self.emu.dtmf_replies
        if self.leg.dtmf_used >= len(replies):
            return None
        digits = replies[self.leg.dtmf_used]
        self.leg.dtmf_used += 1
        self.callee.digits.append(digits)
        return digits

    def _speaks(self) -> bool:
        return self.callee.script.outcome != "voicemail" and not self.callee.hung_up

    def next_reply(self) -> tuple[str, str] | None:
        """The callee's turn on a stream: digits first while scripted, then its lines."""
        if not self._speaks():
            return None
        digits = self._next_digits()
        if digits:
            return ("dtmf", digits)
        line = self.callee.next_line()
        return ("speech", line) if line else None

    async def listen(self, dtmf: bool, speech: bool, timeout: float) -> tuple[str, str] | None:
        """A Gather: the callee answers after its reply delay, or stays silent until timeout."""
        delay = self.callee.script.reply_delay_ms / 1000
        if not self._speaks() or delay > timeout:
            await self.sleep(timeout)
            return None
        await self.sleep(delay)
        digits = self._next_digits() if dtmf else None
        if digits:
            await self.sleep(DTMF_SECONDS_PER_DIGIT * len(digits))
            return ("dtmf", digits)
        line = self.callee.next_line() if speech else None
        if line:
            await self.sleep(speaking_seconds(line))
            return ("speech", line)
        await self.sleep(timeout - delay)
        return None

    async def stream(self, stream: Stream) -> bool:
        emu, leg = self.emu, self.leg
        peer = StreamPeer(
            account_sid=emu.account_sid,
            call_sid=leg.call.id,
            auth_token=emu.auth_token,
            callee=self.callee,
            extra=leg.call.extra,
            time_scale=emu.time_scale,
            reply_delay_s=self.callee.script.reply_delay_ms / 1000,
            next_reply=self.next_reply,
            on_status=lambda sid, event, err: emu._stream_status(leg, stream, sid, event, err),
            note=self.note,
            speech=emu.speech,
        )
        session = MediaStreamSession(stream, peer)
        leg.call.extra["stream"] = session  # the live stream, for tests (barge_in)
        return await session.run()
