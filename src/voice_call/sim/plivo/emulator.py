"""A local Plivo: the Voice API REST subset, Plivo XML, callbacks and audio streams, on loopback.

Public API (shared by the three carrier emulators)::

    emu = PlivoEmulator(auth_id, auth_token, script=CalleeScript(), time_scale=1.0,
                        answer_url=None, answer_method="POST",     # the inbound application
                        hangup_url=None, hangup_method="POST",
                        signature="v3",                            # or "v2"
                        dtmf_replies=(),                           # keys pressed per GetInput
                        same_request_and_call_uuid=True)
    async with emu:
        emu.url          # REST base: point the SDK / provider at f"{emu.url}/v1/Account/..."
        emu.calls        # dict[CallUUID, EmulatedCall]
        emu.requests     # dict[RequestUUID, CallUUID]
        emu.legs         # dict[CallUUID, PlivoLeg]: the carrier's side (request_uuid, `ended`)
        emu.webhooks     # WebhookLog: every request sent to the app, in order; `kind` is one of
                         # ring, answer, action, redirect, transfer, fallback, hangup, machine,
                         # stream
        call = await emu.place_inbound(from_number, to_number, script=None)
        await emu.wait_ended(call_id, timeout=10.0)     # -> EmulatedCall (after hangup_url)
        emu.dial(from_, to, Target(url), DialOptions())  # outbound without REST (POST Call/)
        emu.hangup_by_callee(call_id)                   # the person on the line hangs up

What the callee hears (`call.callee.heard`): a Speak's text, `[play URL]` for a Play, and
`[audio N ms]` for each turn of stream audio (the audio itself is in
`call.extra["heard_audio"]`, µ-law). `call.extra` also holds `request_uuid`, `streams`
(a `StreamLog` per `<Stream>`), and `unsupported` / `xml_errors` when there were any.

REST (Basic auth `auth_id:auth_token`, JSON or form bodies, every path ends in `/`):
`POST /v1/Account/{id}/Call/` (201 `{"api_id","message":"call fired","request_uuid"}`),
`GET .../Call/{uuid}/?status=live` (live call), `GET .../Call/{uuid}/` (CDR of an ended call),
`DELETE .../Call/{uuid}/` (204), `DELETE .../Request/{request_uuid}/` (204, before answer),
`POST .../Call/{uuid}/` with `legs=aleg, aleg_url, aleg_method` (202 transfer),
`POST .../Call/{uuid}/DTMF/` with `digits` (and `leg=aleg`) (202 "digits sent"; the keys land
in `call.callee.digits` and as `[digits …]` in `callee.heard`). Errors are
`{"api_id","error"}` with 400, 401, 404 or 405.

An outbound call: queued, then (per the callee script) failed, busy, or ringing (`ring_url`),
then no-answer after `ring_timeout`, or answered after `answer_delay_ms`: `answer_url` is fetched
and its XML runs (see markup.py), until the XML ends, a `<Hangup/>`, a DELETE, the callee hangs
up, or `time_limit`; then `hangup_url`. `wait_ended` returns once the hangup callback has been
sent. A voicemail outcome answers; with `machine_detection` it also posts `machine_detection_url`
(`Machine=true`) after `machine_detection_time`, and hangs up when that is `hangup`.

`time_scale` multiplies every delay (dialling, ringing, answer and reply delays, speech and play
durations, timeouts, media pacing); reported durations stay in carrier seconds.

`dtmf_replies` (a sequence, or a function of the dialled number giving one) is what the callee
keys in: each GetInput that accepts dtmf takes the next entry (`""` = no keys this time); when
a GetInput takes both and the entry has keys, the keys win.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import httpx

from voice_call.sim.callee import CalleeScript, SimulatedCallee
from voice_call.sim.common import EmulatedCall, ScriptChooser, WebhookLog, choose_script
from voice_call.sim.control import with_control
from voice_call.sim.machine import MACHINE_OUTCOMES, answer_machine
from voice_call.sim.plivo.call import (
    API_HANGUP,
    BUSY,
    CALLEE_REJECTED,
    CANCELED,
    END_OF_XML,
    FAILED,
    MACHINE_HANGUP,
    NO_ANSWER,
    RING_CANCEL,
    TIME_LIMIT,
    CallOver,
    DialOptions,
    PlivoLeg,
    Target,
    Transferred,
    party_hangup,
)
from voice_call.sim.plivo.markup import XmlRunner
from voice_call.sim.plivo.rest import build_rest_app
from voice_call.sim.plivo.webhooks import PlivoHooks, SignatureVersion
from voice_call.sim.recordings import SimRecordings
from voice_call.sim.server import LoopbackService
from voice_call.sim.transfer_target import TransferTargets

DtmfChooser = Sequence[str] | Callable[[str], Sequence[str]]

SETUP_S = 0.5  # carrier seconds from the API request to the far end's first answer
STREAM_CLOSE_S = 5.0  # wall seconds to let streams say goodbye at the end of a call


class PlivoEmulator(LoopbackService):
    def __init__(
        self,
        auth_id: str,
        auth_token: str,
        script: ScriptChooser = CalleeScript(),  # noqa: B008 - frozen, shared safely
        time_scale: float = 1.0,
        *,
        answer_url: str | None = None,
        answer_method: str = "POST",
        hangup_url: str | None = None,
        hangup_method: str = "POST",
        signature: SignatureVersion = "v3",
        dtmf_replies: DtmfChooser = (),
        same_request_and_call_uuid: bool = True,
        http_timeout: float = 15.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        super().__init__(host=host, port=port)
        self.auth_id = auth_id
        self.auth_token = auth_token
        self.script = script
        self.time_scale = time_scale
        self.answer = Target(answer_url, answer_method.upper()) if answer_url else None
        self.on_hangup = Target(hangup_url, hangup_method.upper()) if hangup_url else None
        self.signature = signature
        self.dtmf_replies = dtmf_replies
        # [V] the official V3 vector has CallUUID == RequestUUID == ALegUUID on an outbound call;
        # False gives distinct ids, to prove an app maps RequestUUID to CallUUID.
        self.same_request_and_call_uuid = same_request_and_call_uuid
        self.http_timeout = http_timeout
        self.calls: dict[str, EmulatedCall] = {}
        self.requests: dict[str, str] = {}
        self.webhooks = WebhookLog()
        self.targets = TransferTargets()  # who a <Dial> reaches, and the log of each
        self.legs: dict[str, PlivoLeg] = {}
        self.recordings = SimRecordings()  # the Record API's files, served back
        self._record_callbacks: dict[str, Target | None] = {}  # recording id → callback_url
        self._client: httpx.AsyncClient | None = None
        self._hooks: PlivoHooks | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifetime ---------------------------------------------------------------------------

    def asgi_app(self) -> Any:
        return with_control(build_rest_app(self), self)

    async def _on_start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.http_timeout, follow_redirects=True)
        self._hooks = PlivoHooks(self._client, self.webhooks, self.auth_token, self.signature)

    async def _on_stop(self) -> None:
        """Drop every call silently (no callbacks), then close the client."""
        tasks = [*self._tasks, *(t for leg in self.legs.values() for t in leg.streams)]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for leg in self.legs.values():
            await leg.cancel_timers()
        if self._client is not None:
            await self._client.aclose()

    @property
    def hooks(self) -> PlivoHooks:
        if self._hooks is None:
            raise RuntimeError("the emulator is not started: use `async with emulator:`")
        return self._hooks

    # -- public driving API -----------------------------------------------------------------

    def dial(
        self,
        from_number: str,
        to_number: str,
        answer: Target,
        options: DialOptions | None = None,
    ) -> PlivoLeg:
        """Start an outbound call, as `POST Call/` does; returns at once (the call is queued)."""
        options = options or DialOptions()
        leg = self._new_leg("outbound", from_number, to_number, None, answer, options.hangup)
        leg.on_ring = options.ring
        leg.fallback = options.fallback
        leg.ring_timeout = options.ring_timeout
        leg.time_limit = options.time_limit
        leg.hangup_on_ring = options.hangup_on_ring
        leg.machine_detection = options.machine_detection
        leg.machine_detection_time_ms = options.machine_detection_time_ms
        leg.on_machine = options.machine_detection_target
        leg.send_digits = options.send_digits
        self._spawn(self._outbound(leg))
        return leg

    async def place_inbound(
        self,
        from_number: str,
        to_number: str,
        script: CalleeScript | None = None,
        *,
        answer_url: str | None = None,
        answer_method: str = "POST",
        dtmf_replies: Sequence[str] | None = None,
    ) -> EmulatedCall:
        """A caller dials `to_number`: Plivo posts the application's answer_url and runs its XML."""
        answer = Target(answer_url, answer_method.upper()) if answer_url else self.answer
        if answer is None:
            raise ValueError("no answer_url: pass one here or to PlivoEmulator(answer_url=...)")
        leg = self._new_leg("inbound", from_number, to_number, script, answer, self.on_hangup)
        if dtmf_replies is not None:
            leg.dtmf_replies = list(dtmf_replies)
        self._spawn(self._inbound(leg))
        return leg.call

    async def wait_ended(self, call_id: str, timeout: float = 10.0) -> EmulatedCall:
        call = self.calls[self.requests.get(call_id, call_id)]
        await asyncio.wait_for(call.ended.wait(), timeout)
        return call

    def find(self, call_uuid: str) -> PlivoLeg | None:
        return self.legs.get(call_uuid)

    def hangup_by_callee(self, call_id: str) -> bool:
        """The person on the line hangs up now; False when the call is not live."""
        leg = self.legs.get(call_id)
        if leg is None or not leg.live:
            return False
        leg.call.callee.hung_up = True
        answered = leg.call.answered_at is not None
        leg.end(party_hangup(leg.call.direction) if answered else CALLEE_REJECTED)
        return True

    def hangup(self, call_uuid: str) -> bool:
        """`DELETE Call/{uuid}/`: hang up a live call (before answer this cancels it)."""
        leg = self.legs.get(call_uuid)
        if leg is None or not leg.live:
            return False
        leg.end(API_HANGUP if leg.call.answered_at is not None else CANCELED)
        return True

    def cancel(self, request_uuid: str) -> bool:
        """`DELETE Request/{uuid}/`: cancel a call that is queued or ringing."""
        leg = self.legs.get(self.requests.get(request_uuid, ""))
        if leg is None or not leg.live or leg.call.answered_at is not None:
            return False
        leg.end(CANCELED)
        return True

    def transfer(self, call_uuid: str, target: Target) -> bool:
        """`POST Call/{uuid}/` with legs=aleg: run the XML at `target` instead of the current."""
        leg = self.legs.get(call_uuid)
        if leg is None or not leg.live or leg.call.answered_at is None:
            return False
        leg.request_transfer(target)
        return True

    def start_recording(self, call_uuid: str, callback: Target | None) -> str | None:
        leg = self.legs.get(call_uuid)
        if leg is None or not leg.live or leg.call.answered_at is None:
            return None
        recording = self.recordings.start(leg.id, 1)  # [M] Plivo records one mixed channel
        self._record_callbacks[recording.id] = callback
        return recording.id

    def recording_file(self, recording_id: str) -> bytes | None:
        return self.recordings.file(recording_id)

    async def _recorded(self, leg: PlivoLeg) -> None:
        """The call ended: each recording's callback_url gets its record_url."""
        for recording in self.recordings.finish(leg.id):
            callback = self._record_callbacks.get(recording.id)
            if callback is None:
                continue
            start_ms = int(recording.started * 1000)
            millis = recording.duration_s * 1000
            params = {
                "api_id": str(uuid.uuid4()),
                "call_uuid": leg.id,
                "record_url": (
                    f"{self.url}/v1/Account/{self.auth_id}/Recording/{recording.id}.wav"
                ),
                "recording_id": recording.id,
                "recording_duration": str(recording.duration_s),
                "recording_duration_ms": str(millis),
                "recording_start_ms": str(start_ms),
                "recording_end_ms": str(start_ms + millis),
            }
            await self.hooks.send("recording", callback, params)

    def send_digits(self, call_uuid: str, digits: str) -> bool:
        """`POST Call/{uuid}/DTMF/`: the person on an answered call hears the keys."""
        leg = self.legs.get(call_uuid)
        if leg is None or not leg.live or leg.call.answered_at is None:
            return False
        leg.call.callee.digits.append(digits)  # what the app sent, as Telnyx's send_dtmf logs
        leg.call.callee.heard.append(f"[digits {digits}]")
        return True

    # -- calls ------------------------------------------------------------------------------

    def _new_leg(
        self,
        direction: str,
        from_number: str,
        to_number: str,
        script: CalleeScript | None,
        answer: Target,
        on_hangup: Target | None,
    ) -> PlivoLeg:
        request_uuid = str(uuid.uuid4())
        call_uuid = request_uuid if self.same_request_and_call_uuid else str(uuid.uuid4())
        chosen = script or choose_script(self.script, to_number)
        call = EmulatedCall(call_uuid, direction, from_number, to_number, SimulatedCallee(chosen))
        call.extra |= {"request_uuid": request_uuid, "heard_audio": bytearray(), "streams": []}
        replies = self.dtmf_replies
        keys = replies(to_number) if callable(replies) else replies
        leg = PlivoLeg(call, request_uuid, self.auth_id, self.time_scale, answer, on_hangup)
        leg.dtmf_replies = list(keys)
        self.calls[call_uuid] = call
        self.requests[request_uuid] = call_uuid
        self.legs[call_uuid] = leg
        return leg

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _outbound(self, leg: PlivoLeg) -> None:
        with contextlib.suppress(CallOver):
            await self._ring(leg)
            await self._converse(leg, "in-progress")
        await self._finish(leg)

    async def _inbound(self, leg: PlivoLeg) -> None:
        leg.call.status = "ringing"
        with contextlib.suppress(CallOver):
            await self._converse(leg, "ringing")  # [M] inbound answer_url says CallStatus=ringing
        await self._finish(leg)

    async def _ring(self, leg: PlivoLeg) -> None:
        """From queued to answered, or raise CallOver with the reason it never was."""
        script = leg.call.callee.script
        await leg.pause(SETUP_S)
        if script.outcome in ("failed", "busy"):  # [M] a busy line rings no ring_url
            leg.end(FAILED if script.outcome == "failed" else BUSY)
            raise CallOver
        leg.call.status = "ringing"
        ringing_at = time.time()
        if leg.hangup_on_ring is not None:
            leg.spawn(self._hangup_on_ring(leg, leg.hangup_on_ring))
        if leg.on_ring is not None:
            await self.hooks.send("ring", leg.on_ring, leg.params("ringing", "Ring"))
        answer_s = script.answer_delay_ms / 1000
        if script.outcome == "no-answer" or answer_s >= leg.ring_timeout:
            spent = (time.time() - ringing_at) / self.time_scale
            await leg.pause(leg.ring_timeout - spent)
            leg.end(NO_ANSWER)
            raise CallOver
        await leg.pause(answer_s - (time.time() - ringing_at) / self.time_scale)
        leg.mark_answered()
        leg.after(leg.time_limit, TIME_LIMIT)
        answer_machine(script, leg.call.extra, self.time_scale)  # a machine starts its greeting
        if script.outcome in ("voicemail", *MACHINE_OUTCOMES) and leg.machine_detection:
            leg.spawn(self._detect_machine(leg))

    async def _hangup_on_ring(self, leg: PlivoLeg, seconds: float) -> None:
        # [M] counted from the start of ringing and applied after answer too
        await asyncio.sleep(seconds * self.time_scale)
        leg.end(RING_CANCEL if leg.call.answered_at is None else TIME_LIMIT)

    async def _detect_machine(self, leg: PlivoLeg) -> None:
        await asyncio.sleep(leg.machine_detection_time_ms / 1000 * self.time_scale)
        if not leg.live:
            return
        hang_up = leg.machine_detection == "hangup"
        if leg.on_machine is not None:
            params = leg.params("in-progress", "MachineDetection") | {
                "Machine": "true",
                "IfMachine": "hangup" if hang_up else "continue",
            }
            await self.hooks.send("machine", leg.on_machine, params)
        if hang_up:
            leg.end(MACHINE_HANGUP)

    async def _converse(self, leg: PlivoLeg, status: str) -> None:
        """Fetch answer_url and run the XML; a transfer swaps in the XML from its URL."""
        runner = XmlRunner(leg, self.hooks, self.targets)
        kind, target, fallback = "answer", leg.answer, leg.fallback
        params = leg.params(status, "StartApp")
        while True:
            try:
                xml = await self.hooks.fetch_xml(leg, kind, target, params, fallback)
                await runner.run(xml)
                leg.end(END_OF_XML)
                return
            except Transferred:
                kind, target, fallback = "transfer", leg.take_transfer(), None
                params = leg.params("in-progress", "Transfer")  # [M] Event value

    async def _finish(self, leg: PlivoLeg) -> None:
        leg.end(END_OF_XML)  # no-op when a reason was already given
        how = leg.ended
        assert how is not None
        call = leg.call
        call.ended_at = time.time()
        call.status = how.status
        call.hangup_cause = how.cause
        await leg.cancel_timers()
        if leg.streams:
            await asyncio.wait(leg.streams, timeout=STREAM_CLOSE_S)
        if leg.on_hangup is not None:
            await self.hooks.send("hangup", leg.on_hangup, leg.hangup_params())
        await self._recorded(leg)
        call.ended.set()
