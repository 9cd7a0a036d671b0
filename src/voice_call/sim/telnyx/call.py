"""One emulated Telnyx call leg: its ids and state, webhooks in order, ringing, hang-up.

Webhooks follow docs/carriers.md §2.2 and the lifecycles of §4 "Telnyx". The Call Control
commands that act on a leg are in commands.py, the callee's turn-taking in turns.py, the media
WebSocket in stream.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from voice_call.sim.common import EmulatedCall
from voice_call.sim.machine import MACHINE_OUTCOMES, answer_machine, note_start
from voice_call.sim.recordings import SimRecording, SimRecordings
from voice_call.sim.telnyx import errors, params
from voice_call.sim.telnyx.amd import run_detection
from voice_call.sim.telnyx.stream import CallInfo, StreamListener, StreamParams, TelnyxMediaStream
from voice_call.sim.telnyx.turns import CalleeTurns, speech_seconds
from voice_call.sim.telnyx.webhooks import WebhookQueue, WebhookSender, iso_now

log = logging.getLogger(__name__)

Body = dict[str, Any]

DEFAULT_TIMEOUT_SECS = 30  # Dial `timeout_secs` default: believed 30 [M]
DEFAULT_TIME_LIMIT_SECS = 14400
DIGIT_GAP_S = 0.1  # between two key presses of the callee

# sip_hangup_cause per cause: 486 for busy is documented [S]; the others are our guess [M].
SIP_CAUSE = {
    "normal_clearing": "200",
    "user_busy": "486",
    "timeout": "487",
    "originator_cancel": "487",
    "not_found": "404",
    "call_rejected": "603",
    "time_limit": "200",
}


ANSWERING = ("answer", "voicemail", *MACHINE_OUTCOMES)  # outcomes that pick up


class Switch(Protocol):
    """`actions/transfer` and `actions/bridge`, which act on more than one leg."""

    def transfer(self, leg: TelnyxCall, body: Body) -> None: ...

    def bridge(self, leg: TelnyxCall, body: Body) -> None: ...


@dataclass(frozen=True)
class CallContext:
    """What every call of one emulator shares."""

    sender: WebhookSender
    time_scale: float
    dtmf_replies: tuple[str, ...]
    user_id: str
    stream_silence: bool
    recordings: SimRecordings = field(default_factory=SimRecordings)  # record_start's files
    switchboard: Switch | None = None  # transfers and bridges (switchboard.py)
    files_url: Callable[[], str] = lambda: ""  # where they are served (pre-signed, no auth)


class TelnyxCall(StreamListener):
    def __init__(
        self,
        ctx: CallContext,
        call: EmulatedCall,
        *,
        connection_id: str,
        call_leg_id: str,
        call_session_id: str,
        webhook_url: str | None,
        client_state: str | None,
        timeout_secs: int = DEFAULT_TIMEOUT_SECS,
        time_limit_secs: int = DEFAULT_TIME_LIMIT_SECS,
        stream: StreamParams | None = None,
        transcription: Body | None = None,
    ) -> None:
        self.ctx = ctx
        self.call = call
        self.callee = call.callee
        self.connection_id = connection_id
        self.call_leg_id = call_leg_id
        self.call_session_id = call_session_id
        self.webhook_url = webhook_url
        self.client_state = client_state
        self.timeout_secs = timeout_secs
        self.time_limit_secs = time_limit_secs
        self.start_time = iso_now()
        self.webhook_queue = WebhookQueue(ctx.sender)
        self.command_ids: set[str] = set()
        self.stream_on_answer = stream  # from Dial or answer: opened once answered
        self.transcription_on_answer = transcription
        self.output = asyncio.Lock()  # speak / playback / gather prompts play one at a time
        self.turns = CalleeTurns(self)
        self.ring_task: asyncio.Task[None] | None = None
        self.on_answered: Callable[[], None] | None = None  # a transfer bridges on answer
        self.is_ended = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._owed: dict[int, tuple[str, Body]] = {}
        self._owed_count = 0
        self._dtmf_cursor = 0
        self._stream: TelnyxMediaStream | None = None
        self._stream_started = False
        call.extra.update(
            call_leg_id=call_leg_id,
            call_session_id=call_session_id,
            connection_id=connection_id,
            client_state=client_state,
            webhook_url=webhook_url,
            audio_in=bytearray(),
            mp3_in=[],
            frames_in=[],  # AppFrame per frame the app sent on the stream, as it arrived
            commands=[],
            start_time=self.start_time,
        )

    # -- identity and webhooks -------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.call.id

    @property
    def outgoing(self) -> bool:
        return self.call.direction == "outbound"

    @property
    def answered(self) -> bool:
        return self.call.answered_at is not None

    def numbers(self) -> Body:
        return {"from": self.call.from_number, "to": self.call.to_number}

    def post(self, event_type: str, payload: Body) -> None:
        base = {
            "call_control_id": self.id,
            "call_leg_id": self.call_leg_id,
            "call_session_id": self.call_session_id,
            "connection_id": self.connection_id,
            "client_state": self.client_state,
        }
        self.webhook_queue.post(self.webhook_url, event_type, {**base, **payload})

    def owe(self, event_type: str, payload: Body) -> int:
        """Register the webhook to send if the call ends before this operation completes."""
        self._owed_count += 1
        self._owed[self._owed_count] = (event_type, payload)
        return self._owed_count

    def settle(self, token: int) -> None:
        self._owed.pop(token, None)

    def resource(self) -> Body:
        """The `data` of Dial and of `GET /v2/calls/{id}`."""
        data: Body = {
            "record_type": "call",
            "call_control_id": self.id,
            "call_leg_id": self.call_leg_id,
            "call_session_id": self.call_session_id,
            "client_state": self.client_state,
            "is_alive": not self.is_ended,
            "start_time": self.start_time,
        }
        if self.call.answered_at is not None:
            end = self.call.ended_at or time.time()
            data["call_duration"] = int(end - self.call.answered_at)
        if self.is_ended:
            data["end_time"] = self.call.extra.get("end_time")
        return data

    def apply_common(self, body: Body) -> None:
        """Every command may carry `client_state`: it replaces the state in later webhooks."""
        state = params.client_state(body)
        if state is not None:
            self.client_state = state
            self.call.extra["client_state"] = state

    def set_webhook_url(self, url: str) -> None:
        self.webhook_url = url
        self.call.extra["webhook_url"] = url

    def require_answered(self, action: str) -> None:
        if not self.answered:
            raise errors.wrong_state(f"'{action}' needs an answered call.")

    # -- tasks and time --------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("telnyx emulator task failed", exc_info=task.exception())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds * self.ctx.time_scale)

    # -- ringing ---------------------------------------------------------------------------------

    def start_outbound(self) -> None:
        self.call.status = "bridging"
        self.post(
            "call.initiated",
            {
                **self.numbers(),
                "direction": "outgoing",
                "state": "bridging",
                "start_time": self.start_time,
            },
        )
        self.ring_task = self.spawn(self._ring())

    async def _ring(self) -> None:
        script = self.callee.script
        delay = script.answer_delay_ms / 1000
        if script.outcome == "busy":
            await self.sleep(delay)
            self.end("user_busy", "callee")
        elif script.outcome == "failed":
            await self.sleep(delay)
            self.end("not_found", "unknown")  # a number that cannot be reached [M]
        elif script.outcome in ANSWERING and delay < self.timeout_secs:
            # A voicemail greeting is a machine answering; its "lines" are the greeting.
            await self.sleep(delay)
            self.answer_now()
        else:  # no-answer: ring until timeout_secs runs out
            await self.sleep(self.timeout_secs)
            self.end("timeout", "caller")

    def start_inbound(self, ring_timeout_s: float) -> None:
        self.call.status = "parked"
        self.post(
            "call.initiated",
            {
                **self.numbers(),
                "direction": "incoming",
                "state": "parked",
                "start_time": self.start_time,
                "caller_id_name": self.call.from_number,
            },
        )
        self.ring_task = self.spawn(self._caller_gives_up(ring_timeout_s))

    async def _caller_gives_up(self, ring_timeout_s: float) -> None:
        await self.sleep(ring_timeout_s)
        self.end("originator_cancel", "caller")  # cause for an unanswered inbound call [M]

    def answer_now(self) -> None:
        if self.ring_task is not None and self.ring_task is not asyncio.current_task():
            self.ring_task.cancel()
        self.call.status = "answered"
        self.call.answered_at = time.time()
        self.post(
            "call.answered",
            {**self.numbers(), "state": "answered", "start_time": self.start_time},
        )
        if self.on_answered is not None:
            self.on_answered()
        self.spawn(self._time_limit())
        answer_machine(self.callee.script, self.call.extra, self.ctx.time_scale)
        amd = self.call.extra.get("amd", "disabled")
        if amd != "disabled":
            self.spawn(run_detection(self, amd))
        if self.stream_on_answer is not None:
            self.spawn(self.open_stream(self.stream_on_answer))
        if self.transcription_on_answer is not None:
            self.turns.start_transcription(self.transcription_on_answer)

    async def _time_limit(self) -> None:
        await self.sleep(self.time_limit_secs)
        self.end("time_limit", "unknown")

    # -- what the callee says or presses ---------------------------------------------------------

    async def say(self, text: str) -> None:
        """speak.started … speak.ended around the time it takes to say `text`."""
        self.turns.bot_started()
        self.turns.speaking += 1
        token = self.owe("call.speak.ended", {"status": "call_hangup"})
        self.post("call.speak.started", {})
        note_start(self.call.extra, text)  # an answering machine logs when it began
        try:
            await self.sleep(speech_seconds(text))
        finally:
            self.turns.speaking -= 1
        self.settle(token)
        self.post("call.speak.ended", {"status": "completed"})

    def next_dtmf(self) -> str | None:
        """The keys for this gather attempt from `dtmf_replies`, or None once they run out."""
        if self._dtmf_cursor >= len(self.ctx.dtmf_replies):
            return None
        digits = self.ctx.dtmf_replies[self._dtmf_cursor]
        self._dtmf_cursor += 1
        return digits

    async def press(self, keys: str, terminator: str = "", maximum: int = 128) -> str:
        """The callee presses `keys`: call.dtmf.received (and a stream `dtmf` frame) per key.
        Returns the digits a gather keeps: up to the terminator, at most `maximum`."""
        await self.sleep(self.callee.script.reply_delay_ms / 1000)
        entered = ""
        for key in keys:
            self.post("call.dtmf.received", {**self.numbers(), "digit": key})
            if self._stream is not None:
                await self._stream.send_dtmf(key)
            if key == terminator:
                break
            entered += key
            if len(entered) >= maximum:
                break
            await self.sleep(DIGIT_GAP_S)
        return entered

    def remote_hangup(self) -> None:
        """The person on the other end hangs up."""
        self.callee.hung_up = True
        if not self.answered and self.outgoing:
            self.end("call_rejected", "callee")  # declined while ringing [M]
        else:
            self.end("normal_clearing", "callee" if self.outgoing else "caller")

    # -- media stream ----------------------------------------------------------------------------

    @property
    def stream(self) -> TelnyxMediaStream | None:
        """The open media stream, once `streaming.started` was sent."""
        return self._stream if self._stream_started else None

    async def open_stream(self, stream_params: StreamParams) -> None:
        await self.close_stream()  # one stream per call in the emulator [M]
        info = CallInfo(
            user_id=self.ctx.user_id,
            call_control_id=self.id,
            call_session_id=self.call_session_id,
            from_number=self.call.from_number,
            to_number=self.call.to_number,
            client_state=self.client_state,
        )
        stream = TelnyxMediaStream(
            stream_params,
            info,
            self,
            self.call.extra["audio_in"],
            time_scale=self.ctx.time_scale,
            send_silence=self.ctx.stream_silence,
            mp3_in=self.call.extra["mp3_in"],
            frames_in=self.call.extra["frames_in"],
        )
        self._stream, self._stream_started = stream, False
        try:
            await stream.open()
        except Exception as exc:  # refused, timed out, bad handshake: Telnyx reports them alike
            self._stream = None
            self.post(
                "streaming.failed",
                {
                    "stream_url": stream_params.url,
                    "stream_id": stream.stream_id,
                    "failure_reason": f"{type(exc).__name__}: {exc}",
                },
            )
            return
        self._stream_started = True
        self.call.extra["stream_id"] = stream.stream_id
        self.post("streaming.started", {"stream_url": stream_params.url})
        self.turns.maybe_reply()

    async def close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        await stream.close()
        if self._stream_started:
            self.post("streaming.stopped", {"stream_url": stream.params.url})

    def playout_started(self) -> None:
        self.turns.bot_started()

    def playout_ended(self, played_ms: int, interrupted: bool) -> None:
        self.turns.bot_finished(f"[audio {played_ms} ms]", interrupted=interrupted)

    def mp3_received(self, size: int) -> None:
        self.turns.bot_started()
        self.turns.bot_finished(f"[mp3 {size} bytes]")

    # -- the end ---------------------------------------------------------------------------------

    def end(self, cause: str, source: str) -> None:
        """Hang up now: later commands get 422; the webhooks still owed go out, then call.hangup."""
        if self.is_ended:
            return
        self.is_ended = True
        self.call.status = "hangup"
        self.call.ended_at = time.time()
        self.call.hangup_cause = cause
        self.call.extra["end_time"] = iso_now()
        self.call.extra["hangup_source"] = source
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        for event_type, payload in self._owed.values():
            self.post(event_type, payload)
        self._owed.clear()
        self.spawn(self._finish(cause, source))

    async def _finish(self, cause: str, source: str) -> None:
        await self.close_stream()  # streaming.stopped before call.hangup [M]
        self.post(
            "call.hangup",
            {
                **self.numbers(),
                "state": "hangup",
                "hangup_cause": cause,
                "hangup_source": source,
                "sip_hangup_cause": SIP_CAUSE.get(cause, "unspecified"),
                "start_time": self.start_time,
                "call_quality_stats": None,
            },
        )
        self.recordings_saved()  # after call.hangup, as Telnyx sends them [M]
        await self.webhook_queue.drain()
        self.call.ended.set()

    def recordings_saved(self) -> None:
        """Stop the call's recordings: a `call.recording.saved` each, with its file's URL."""
        for recording in self.ctx.recordings.finish(self.id):
            self.post("call.recording.saved", self._saved(recording))

    def _saved(self, recording: SimRecording) -> Body:
        url = f"{self.ctx.files_url()}/{recording.id}.wav"
        start = int(recording.started)  # whole seconds apart, as long as the file
        return {
            "channels": "dual" if recording.channels == 2 else "single",
            "recording_started_at": _iso(start),
            "recording_ended_at": _iso(start + recording.duration_s),
            "recording_urls": {"wav": url},
            "public_recording_urls": {"wav": url},
        }

    async def shutdown(self) -> None:
        """Emulator exit: stop everything without sending more webhooks."""
        self.is_ended = True
        for task in list(self._tasks):
            task.cancel()
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.close()
        await self.webhook_queue.close()


def _iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
