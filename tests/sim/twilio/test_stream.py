"""<Connect><Stream>: the emulator as Twilio's Media Streams client against a WebSocket app."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.sim.twilio.app import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    TwimlApp,
    in_thread,
    sdk_client,
    signed_by_twilio,
)
from tests.support import wait_until
from voice_call.asgi_server import BackgroundServer
from voice_call.audio.g711 import FRAME_BYTES, frames
from voice_call.sim.callee import CalleeScript, SimulatedCallee
from voice_call.sim.twilio import TwilioEmulator
from voice_call.sim.twilio.markup import Stream
from voice_call.sim.twilio.stream import MediaStreamSession, StreamPeer
from voice_call.sim.voice import synthetic_speech

SCALE = 0.1  # a 20 ms frame every 2 ms
TONE = bytes(range(0x10, 0x10 + FRAME_BYTES))  # recognisable, never µ-law silence (0xFF)
SILENT = b"\xff" * FRAME_BYTES
Message = dict[str, Any]


class StreamApp:
    """The app's WebSocket server: records what Twilio sends; `behaviour` is the app's logic."""

    def __init__(self, behaviour: Callable[[StreamApp], Awaitable[None]]) -> None:
        self.behaviour = behaviour
        self.messages: list[Message] = []
        self.arrived: list[float] = []
        self.headers: dict[str, str] = {}
        self.closed_by_twilio = asyncio.Event()
        self.base = ""
        self._ws: WebSocket | None = None
        self._changed = asyncio.Condition()
        self.asgi = Starlette(routes=[WebSocketRoute("/media", self._endpoint)])

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/media"

    async def _endpoint(self, ws: WebSocket) -> None:
        await ws.accept()
        self._ws, self.headers = ws, dict(ws.headers)
        reader = asyncio.create_task(self._read(ws))
        try:
            await self.behaviour(self)
        finally:
            if not reader.done():  # the app ends the stream: close from our side
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await ws.close()
            reader.cancel()

    async def _read(self, ws: WebSocket) -> None:
        try:
            while True:
                message = json.loads(await ws.receive_text())
                self.messages.append(message)
                self.arrived.append(time.monotonic())
                async with self._changed:
                    self._changed.notify_all()
        except WebSocketDisconnect:
            self.closed_by_twilio.set()

    async def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 5) -> Message:
        async def find() -> Message:
            async with self._changed:
                while True:
                    hit = next((m for m in self.messages if predicate(m)), None)
                    if hit is not None:
                        return hit
                    await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    async def send(self, message: Message) -> None:
        assert self._ws is not None
        await self._ws.send_text(json.dumps(message))

    async def play(self, audio: bytes, mark: str) -> int:
        """Queue audio then a mark, as a TTS pipeline would; returns the last chunk seen."""
        sid = self.stream_sid()
        for frame in frames(audio):
            payload = base64.b64encode(frame).decode()
            await self.send({"event": "media", "streamSid": sid, "media": {"payload": payload}})
        await self.send({"event": "mark", "streamSid": sid, "mark": {"name": mark}})
        return self.last_chunk()

    def stream_sid(self) -> str:
        return str(next(m for m in self.messages if m["event"] == "start")["streamSid"])

    def last_chunk(self) -> int:
        media = [m for m in self.messages if m["event"] == "media"]
        return int(media[-1]["media"]["chunk"]) if media else 0

    def of(self, event: str) -> list[Message]:
        return [m for m in self.messages if m["event"] == event]


@asynccontextmanager
async def streaming(
    behaviour: Callable[[StreamApp], Awaitable[None]], **emulator: Any
) -> AsyncIterator[tuple[StreamApp, TwimlApp, TwilioEmulator, Client]]:
    stream_app, http_app = StreamApp(behaviour), TwimlApp()
    async with (
        BackgroundServer(stream_app.asgi) as ws_server,
        BackgroundServer(http_app.asgi) as http_server,
    ):
        stream_app.base, http_app.base = ws_server.url, http_server.url
        emulator.setdefault("speech", synthetic_speech)
        async with TwilioEmulator(ACCOUNT_SID, AUTH_TOKEN, time_scale=SCALE, **emulator) as emu:
            yield stream_app, http_app, emu, sdk_client(emu.url)


def connect_twiml(app: StreamApp, status_url: str = "", after: str = "") -> str:
    status = f' statusCallback="{status_url}"' if status_url else ""
    return (
        f'<Response><Connect><Stream url="{app.ws_url}" name="agent"{status}>'
        '<Parameter name="callId" value="call-42"/><Parameter name="lang" value="en"/>'
        f"</Stream></Connect>{after}</Response>"
    )


async def test_start_frame_paced_media_mark_echo_and_callee_reply() -> None:
    greeting = TONE * 20  # 400 ms
    seen: dict[str, int] = {}

    async def app_logic(app: StreamApp) -> None:
        await app.wait_for(lambda m: m["event"] == "media")
        seen["queued_at"] = await app.play(greeting, "greeting")
        await app.wait_for(lambda m: m["event"] == "mark")
        seen["echoed_at"] = app.last_chunk()
        # The callee answers after its reply delay: wait for its speech to finish arriving.
        speech_frames = len(frames(synthetic_speech("Hello there")))
        await app.wait_for(
            lambda m: (
                m["event"] == "media"
                and int(m["media"]["chunk"]) > seen["echoed_at"] + speech_frames + 40
            )
        )
        # Returning closes the socket: Twilio then runs the verb after <Connect>.

    script = CalleeScript(replies=("Hello there",), reply_delay_ms=400)
    async with streaming(app_logic, script=script) as (app, http, emu, client):
        twiml = connect_twiml(app, http.url("/stream-status"), "<Say>Bye</Say>")
        call = await in_thread(
            client.calls.create, to="+15550001111", from_="+15550002", twiml=twiml
        )
        ended = await emu.wait_ended(call.sid)

    connected, start, *rest = app.messages
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start["event"] == "start" and start["sequenceNumber"] == "1"
    assert re.fullmatch(r"MZ[0-9a-f]{32}", start["streamSid"])
    assert start["start"] == {
        "accountSid": ACCOUNT_SID,
        "streamSid": start["streamSid"],
        "callSid": call.sid,
        "tracks": ["inbound"],
        "customParameters": {"callId": "call-42", "lang": "en"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    # Every later message is numbered on from 1 and carries the streamSid.
    assert [int(m["sequenceNumber"]) for m in rest] == list(range(2, len(rest) + 2))
    assert all(m["streamSid"] == start["streamSid"] for m in rest)
    media = app.of("media")
    assert [int(m["media"]["chunk"]) for m in media] == list(range(1, len(media) + 1))
    assert all(m["media"]["timestamp"] == str((i) * 20) for i, m in enumerate(media))
    assert all(m["media"]["track"] == "inbound" for m in media)
    payloads = [base64.b64decode(m["media"]["payload"]) for m in media]
    assert all(len(p) == FRAME_BYTES for p in payloads)
    # Paced: 20 ms (x SCALE) per frame, not a burst.
    times = [t for m, t in zip(app.messages, app.arrived, strict=True) if m["event"] == "media"]
    assert times[-1] - times[0] >= 0.7 * (len(times) - 1) * 0.020 * SCALE
    # The mark came back only after all 20 frames before it had played.
    assert app.of("mark") == [
        {
            "event": "mark",
            "sequenceNumber": app.of("mark")[0]["sequenceNumber"],
            "streamSid": start["streamSid"],
            "mark": {"name": "greeting"},
        }
    ]
    assert seen["echoed_at"] - seen["queued_at"] >= 20
    assert bytes(ended.extra["audio_in"]) == greeting
    # The callee heard the greeting, then spoke its line as µ-law on the inbound track.
    assert ended.extra["said_via_stream"] == ["Hello there"]
    spoken = frames(synthetic_speech("Hello there"))
    first = next(i for i, p in enumerate(payloads) if p != SILENT)
    assert payloads[first : first + len(spoken)] == spoken
    assert first > seen["echoed_at"]  # it waited for its turn
    # The app closed the socket: no stop from Twilio, and the call went on to <Say>.
    assert app.of("stop") == []
    assert ended.callee.heard == ["[audio 400 ms]", "Bye"]
    assert ended.hangup_cause == "end-of-document"
    # The handshake and the stream status callbacks are signed.
    assert RequestValidator(AUTH_TOKEN).validate(app.ws_url, {}, app.headers["x-twilio-signature"])
    events = [
        (h.params["StreamEvent"], h.params["StreamSid"]) for h in emu.webhooks if h.kind == "stream"
    ]
    assert events == [
        ("stream-started", start["streamSid"]),
        ("stream-stopped", start["streamSid"]),
    ]
    assert all(signed_by_twilio(h) for h in emu.webhooks)
    assert all(r.params["StreamName"] == "agent" for r in http.received)


async def test_clear_drops_queued_audio_and_returns_its_mark() -> None:
    long_audio = TONE * 100  # 2 s
    seen: dict[str, int] = {}

    async def app_logic(app: StreamApp) -> None:
        await app.wait_for(lambda m: m["event"] == "media")
        stray = {"payload": base64.b64encode(TONE).decode()}
        await app.send({"event": "media", "streamSid": "MZ" + "0" * 32, "media": stray})
        seen["queued_at"] = await app.play(long_audio, "long")
        await app.wait_for(
            lambda m: m["event"] == "media" and int(m["media"]["chunk"]) >= seen["queued_at"] + 10
        )
        assert app._ws is not None
        await app._ws.send_bytes(b"\x00\x01")  # Twilio ignores binary frames (warning 31950)
        await app.send({"event": "clear", "streamSid": app.stream_sid()})
        await app.wait_for(lambda m: m["event"] == "mark")
        seen["echoed_at"] = app.last_chunk()
        await app.wait_for(lambda m: m["event"] == "stop", timeout=10)
        await asyncio.wait_for(app.closed_by_twilio.wait(), 5)  # Twilio closes after `stop`

    async with streaming(app_logic) as (app, _, emu, client):
        call = await in_thread(
            client.calls.create, to="+15550001111", from_="+15550002", twiml=connect_twiml(app)
        )
        callee = emu.calls[call.sid].callee
        await wait_until(lambda: bool(callee.heard))  # the cleared utterance has been heard
        await in_thread(client.calls(call.sid).update, status="completed")
        ended = await emu.wait_ended(call.sid)

    assert app.of("mark")[0]["mark"] == {"name": "long"}
    assert seen["echoed_at"] - seen["queued_at"] < 100  # long before 2 s of audio could play
    played = len(ended.extra["audio_in"])
    assert 0 < played < len(long_audio) and played % FRAME_BYTES == 0
    assert ended.callee.heard == [f"[audio {played // 8} ms]"]
    # Warned once each: the binary frame, and the media for another stream (not played).
    assert [e["code"] for e in ended.extra["errors"]] == [31951, 31950]
    stop = app.messages[-1]
    assert stop["event"] == "stop"
    assert stop["stop"] == {"accountSid": ACCOUNT_SID, "callSid": call.sid}
    assert app.closed_by_twilio.is_set()
    assert ended.hangup_cause == "api-hangup"


async def test_dtmf_frames_then_speech_then_callee_hangs_up() -> None:
    async def app_logic(app: StreamApp) -> None:
        def pressed(m: Message) -> bool:
            return len(app.of("dtmf")) == 2

        def spoke(m: Message) -> bool:
            return bool(m["event"] == "media" and base64.b64decode(m["media"]["payload"]) != SILENT)

        def stopped(m: Message) -> bool:
            return bool(m["event"] == "stop")

        await app.wait_for(lambda m: m["event"] == "media")
        # Each turn: the app talks for 100 ms, then waits for the callee's answer.
        for turn, answered in enumerate([pressed, spoke, stopped]):
            name = f"turn-{turn}"

            def echoed(m: Message, name: str = name) -> bool:
                return bool(m.get("mark", {}).get("name") == name)

            await app.play(TONE * 5, name)
            await app.wait_for(echoed)
            await app.wait_for(answered)

    script = CalleeScript(replies=("yes",), hangup_after_turns=1, reply_delay_ms=100)
    async with streaming(app_logic, script=script, dtmf_replies=("42",)) as (app, _, emu, client):
        call = await in_thread(
            client.calls.create, to="+15550001111", from_="+15550002", twiml=connect_twiml(app)
        )
        ended = await emu.wait_ended(call.sid)

    dtmf = app.of("dtmf")
    assert [m["dtmf"] for m in dtmf] == [
        {"track": "inbound_track", "digit": "4"},
        {"track": "inbound_track", "digit": "2"},
    ]
    assert ended.callee.digits == ["42"]
    assert ended.extra["said_via_stream"] == ["yes"]
    assert ended.callee.heard == ["[audio 100 ms]"] * 3
    assert app.messages[-1]["event"] == "stop"
    assert ended.hangup_cause == "callee-hangup" and ended.status == "completed"


@pytest.mark.parametrize(
    ("stream", "codes"),
    [
        # The query string is dropped (use <Parameter>), then the handshake fails.
        ('<Stream url="ws://127.0.0.1:9/media?token=x"/>', [12200, 31920]),
        ('<Stream url="https://127.0.0.1:9/media"/>', [31922]),
        ('<Stream url="wss://127.0.0.1:9/media" track="both_tracks"/>', [31941]),
    ],
)
async def test_broken_stream_is_logged_and_the_call_goes_on(stream: str, codes: list[int]) -> None:
    async with TwilioEmulator(ACCOUNT_SID, AUTH_TOKEN, time_scale=SCALE) as emu:
        twiml = f"<Response><Connect>{stream}</Connect><Say>Still here.</Say></Response>"
        call = await in_thread(
            sdk_client(emu.url).calls.create, to="+15550001111", from_="+15550002", twiml=twiml
        )
        ended = await emu.wait_ended(call.sid)
    assert [e["code"] for e in ended.extra["errors"]] == codes
    assert ended.callee.heard == ["Still here."]


class _FakeSocket:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))


_app_messages = st.one_of(
    st.text(max_size=40),
    st.builds(
        json.dumps,
        st.fixed_dictionaries(
            {"event": st.sampled_from(["media", "mark", "clear", "start", "nope", 3, [], None])},
            optional={
                "media": st.one_of(
                    st.fixed_dictionaries({"payload": st.one_of(st.text(max_size=12), st.none())}),
                    st.integers(),
                ),
                "mark": st.one_of(st.fixed_dictionaries({"name": st.text(max_size=5)}), st.text()),
                "streamSid": st.text(max_size=5),
            },
        ),
    ),
    st.builds(json.dumps, st.lists(st.integers(), max_size=3)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_app_messages, max_size=8))
def test_any_app_message_is_handled_or_noted(raws: list[str]) -> None:
    """Garbage from the app never breaks the stream: it is queued, answered or noted."""
    notes: list[int] = []
    peer = StreamPeer(
        account_sid=ACCOUNT_SID,
        call_sid="CA" + "0" * 32,
        auth_token=AUTH_TOKEN,
        callee=SimulatedCallee(CalleeScript()),
        extra={},
        time_scale=SCALE,
        reply_delay_s=0.4,
        next_reply=lambda: None,
        on_status=lambda sid, event, error: None,
        note=lambda code, message: notes.append(code),
    )
    session = MediaStreamSession(Stream("ws://127.0.0.1:9/media"), peer)
    socket = _FakeSocket()
    session._ws = socket  # type: ignore[assignment]

    async def feed() -> None:
        for raw in raws:
            await session._handle(raw)
        await session._play(1)

    asyncio.run(feed())
    assert set(notes) <= {31951}
    assert all(m["event"] == "mark" for m in socket.sent)
