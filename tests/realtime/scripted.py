"""A scripted RealtimeModel and a RealtimeSession harness for the bridge's unit tests.

`ScriptedModel` is a test helper, not a fake of a service: it records what the bridge asked of
the model, and the test plays the service's part by calling the listener (`reply`, `drop`, …).
The harness puts the session on the Twilio protocol with a recording outbox (the one the media
tests use) and a `CallControl` that records what the bridge did to the call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.media.stack import Recorder
from voice_call.audio.g711 import FRAME_BYTES
from voice_call.media.lateness import LatenessStats
from voice_call.media.stream_protocols import MarkAck, Start, TwilioStream
from voice_call.models import CallEvent, EndReason, EventType
from voice_call.realtime.bridge import BridgeSettings, RealtimeSession
from voice_call.realtime.model import ModelListener, RealtimeError, SessionSetup


def tone(frames: int, first: int = 0) -> bytes:
    """`frames` 20 ms frames of µ-law, each frame's bytes its own value (order is checkable)."""
    return b"".join(bytes([(first + n) % 200 + 1]) * FRAME_BYTES for n in range(frames))


class ScriptedModel:
    name = "scripted"

    def __init__(self, *, connect_failures: int = 0) -> None:
        self.listener: ModelListener | None = None
        self.speech_ended_at: float | None = None
        self.transcript_pending = False  # a caller turn is still being transcribed
        self._connected = False
        self.connect_failures = connect_failures
        self.setups: list[SessionSetup] = []
        self.audio: list[bytes] = []
        self.said: list[str] = []
        self.interruptions: list[int] = []
        self.results: list[tuple[str, str, Any, str | None]] = []
        self.responds = 0
        self.closed = False

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self, setup: SessionSetup) -> None:
        self.setups.append(setup)
        if self.connect_failures:
            self.connect_failures -= 1
            raise RealtimeError("the model service refused the session")
        self._connected = True

    def send_audio(self, ulaw: bytes) -> None:
        self.audio.append(ulaw)

    def interrupted(self, heard_ms: int) -> None:
        self.interruptions.append(heard_ms)

    def say(self, text: str) -> None:
        self.said.append(text)

    def respond(self) -> None:
        self.responds += 1

    def tool_result(
        self, call_id: str, name: str, output: Any, *, error: str | None = None
    ) -> None:
        self.results.append((call_id, name, output, error))

    async def close(self) -> None:
        self.closed = True
        self._connected = False

    # ------------------------------------------------------------ the service's part

    @property
    def to(self) -> ModelListener:
        assert self.listener is not None
        return self.listener

    def reply(
        self, audio: bytes, transcript: str = "", *, done: bool = True, chunk: int = 800
    ) -> None:
        """A response: its words, its audio in `chunk`-byte deltas, then (`done`) its end."""
        if transcript:
            self.to.on_output_transcript(transcript)
        for start in range(0, len(audio), chunk):
            self.to.on_audio(audio[start : start + chunk])
        if done:
            self.to.on_response_done()

    def drop(self, message: str = "socket closed") -> None:
        self._connected = False
        self.to.on_error(message, True)


class Control:
    """The CallControl: records every call; consults answer after `consult_delay_s`."""

    def __init__(self, *, consult_delay_s: float = 0.0, fail: dict[str, str] | None = None):
        self.consult_delay_s = consult_delay_s
        self.fail = fail or {}
        self.ended: list[EndReason] = []
        self.apologies: list[tuple[str, str]] = []
        self.dtmf: list[str] = []
        self.consults: list[str] = []
        self.hooks: list[tuple[str, dict[str, Any]]] = []
        self.on_end: Any = None  # called when the call is ended (to look at the wire then)

    def _maybe_fail(self, what: str) -> None:
        if what in self.fail:
            raise RuntimeError(self.fail[what])

    async def end_call(self, call_id: str, reason: EndReason) -> None:
        self._maybe_fail("end_call")
        if self.on_end is not None:
            self.on_end()
        self.ended.append(reason)

    async def consult(self, call_id: str, question: str) -> str:
        self.consults.append(question)
        await asyncio.sleep(self.consult_delay_s)
        self._maybe_fail("consult")
        return f"the answer to {question}"

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        self._maybe_fail("send_dtmf")
        self.dtmf.append(digits)

    async def call_hook_tool(self, call_id: str, name: str, arguments: dict[str, Any]) -> Any:
        self._maybe_fail(name)
        self.hooks.append((name, arguments))
        return {"ok": True, "name": name}

    async def end_with_apology(self, call_id: str, apology: str, error: str) -> None:
        self.apologies.append((apology, error))


class BridgeHarness:
    def __init__(
        self, settings: BridgeSettings | None = None, *, scheduler: Any = None, **control: Any
    ) -> None:
        protocol = TwilioStream()
        protocol.bind(Start(call_id="CA1", stream_id="MZ1"))
        self.wire = Recorder()
        self.model = ScriptedModel()
        self.control = Control(**control)
        self.events: list[CallEvent] = []
        self.fatal: list[tuple[int, str]] = []
        self.stats = LatenessStats()

        async def sink(event: CallEvent) -> None:
            self.events.append(event)

        self.session = RealtimeSession(
            "call-1",
            protocol,
            self.wire.outbox,
            self.model,
            sink,
            self.control,
            settings or BridgeSettings(),
            scheduler=scheduler,
            stats=self.stats,
            on_fatal=lambda code, reason: self.fatal.append((code, reason)),
        )

    async def start(self, setup: SessionSetup | None = None) -> BridgeHarness:
        await self.session.start(setup or SessionSetup(instructions="Be brief."))
        return self

    def marks(self) -> list[str]:
        return [m["mark"]["name"] for m in self.wire.of("mark")]

    def ack(self, *names: str) -> None:
        for name in names or self.marks():
            self.session.handle(MarkAck(name))

    async def wait_end_mark(self) -> str:
        await self.wire.wait(lambda: any(n.endswith(".end") for n in self.marks()))
        return next(n for n in self.marks() if n.endswith(".end"))

    def of(self, kind: EventType) -> list[CallEvent]:
        return [e for e in self.events if e.type is kind]

    async def close(self) -> None:
        await self.session.close()
        self.wire.outbox.close()
        await self.wire.task
