"""Each carrier's stream protocol class against that carrier's emulator (the other end of the wire).

The emulators in `voice_call.sim` connect to a small capture app; every frame they send must
parse into our common dataclasses, and the frames our classes build (media, mark/checkpoint,
clear) must make the emulator play audio, echo marks and clear. Then property tests: any text at
all parses to a frame or to `Malformed`, never an exception.
"""

from __future__ import annotations

import asyncio
import base64
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from voice_call.asgi_server import BackgroundServer
from voice_call.audio.g711 import FRAME_BYTES
from voice_call.media.stream_protocols import (
    PROTOCOLS,
    Cleared,
    Connected,
    Dtmf,
    Inbound,
    Malformed,
    MarkAck,
    Media,
    PlivoStream,
    Start,
    Stop,
    StreamProtocol,
    TelnyxStream,
    TwilioStream,
    protocol_for,
)
from voice_call.media.stream_protocols.base import loads
from voice_call.sim.callee import CalleeScript, SimulatedCallee
from voice_call.sim.common import EmulatedCall
from voice_call.sim.plivo.call import PlivoLeg, Target
from voice_call.sim.plivo.stream import PlivoStreamClient as PlivoEmulatorStream
from voice_call.sim.telnyx.stream import CallInfo, StreamListener, StreamParams, TelnyxMediaStream
from voice_call.sim.twilio.markup import Stream
from voice_call.sim.twilio.stream import MediaStreamSession, StreamPeer

SCALE = 0.25
BOT_AUDIO = bytes(range(1, 161)) * 10  # 200 ms of "bot" µ-law, never silence


class Capture:
    """The app's end: parses every frame with `protocol`, runs `behaviour` once started."""

    def __init__(
        self,
        protocol: StreamProtocol,
        behaviour: Callable[[Capture], Awaitable[None]],
    ) -> None:
        self.protocol = protocol
        self.behaviour = behaviour
        self.raw: list[str] = []
        self.parsed: list[Inbound] = []
        self.query: dict[str, str] = {}
        self.ws: WebSocket | None = None
        self._changed = asyncio.Condition()
        self.app = Starlette(routes=[WebSocketRoute("/media", self._endpoint)])

    async def _endpoint(self, ws: WebSocket) -> None:
        await ws.accept()
        self.ws, self.query = ws, dict(ws.query_params)
        started = False
        behaviour: asyncio.Task[None] | None = None
        try:
            while True:
                text = await ws.receive_text()
                frame = self.protocol.parse(text)
                self.raw.append(text)
                self.parsed.append(frame)
                if isinstance(frame, Start) and not started:
                    started = True
                    self.protocol.bind(frame)
                    behaviour = asyncio.create_task(self.behaviour(self))
                async with self._changed:
                    self._changed.notify_all()
        except WebSocketDisconnect:
            pass
        finally:
            if behaviour is not None:
                behaviour.cancel()

    async def send(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_text(text)

    async def play(self, audio: bytes, mark: str) -> None:
        for start in range(0, len(audio), FRAME_BYTES):
            payload = base64.b64encode(audio[start : start + FRAME_BYTES]).decode()
            await self.send(self.protocol.media(payload))
        await self.send(self.protocol.mark(mark))

    async def wait_for(self, predicate: Callable[[Inbound], bool], timeout: float = 5) -> Inbound:
        async def find() -> Inbound:
            async with self._changed:
                while True:
                    hit = next((f for f in self.parsed if predicate(f)), None)
                    if hit is not None:
                        return hit
                    await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    def of(self, kind: type) -> list[Any]:
        return [f for f in self.parsed if isinstance(f, kind)]


@asynccontextmanager
async def serving(capture: Capture) -> AsyncIterator[str]:
    async with BackgroundServer(capture.app, lifespan="off") as server:
        yield server.url.replace("http://", "ws://") + "/media"


# --------------------------------------------------------------------------- Twilio


async def test_twilio_emulator_frames_round_trip() -> None:
    async def behaviour(app: Capture) -> None:
        await app.play(BOT_AUDIO, "greeting")

    capture = Capture(TwilioStream(), behaviour)
    callee = SimulatedCallee(CalleeScript(hangup_after_turns=1))
    replies = iter([("dtmf", "1#")])
    extra: dict[str, Any] = {}
    async with serving(capture) as url:
        peer = StreamPeer(
            account_sid="AC" + "0" * 32,
            call_sid="CA" + "1" * 32,
            auth_token="secret",
            callee=callee,
            extra=extra,
            time_scale=SCALE,
            reply_delay_s=0.0,
            next_reply=lambda: next(replies, None),
            on_status=lambda sid, event, error: None,
            note=lambda code, message: None,
        )
        session = MediaStreamSession(Stream(url=url, parameters={"token": "tok-1"}), peer)
        callee.said.append("a line")  # one line said: the next bot turn ends the call
        hung_up = await asyncio.wait_for(session.run(), 10)
        await capture.wait_for(lambda f: isinstance(f, Stop))
    assert hung_up
    assert isinstance(capture.parsed[0], Connected)
    start = capture.parsed[1]
    assert isinstance(start, Start)
    assert start.call_id == peer.call_sid and start.stream_id == session.stream_sid
    assert start.token == "tok-1" and start.custom_params == {"token": "tok-1"}
    assert (start.encoding, start.sample_rate) == ("pcmu", 8000)
    media = capture.of(Media)
    assert media and all(len(m.payload) == FRAME_BYTES and m.track == "inbound" for m in media)
    assert [m.timestamp_ms for m in media[:3]] == [0, 20, 40]
    assert [m.name for m in capture.of(MarkAck)] == ["greeting"]
    assert bytes(extra["audio_in"]) == BOT_AUDIO  # our media frames played, byte for byte
    assert not any(isinstance(f, Malformed) for f in capture.parsed)


async def test_twilio_clear_drops_queued_audio_and_returns_the_mark() -> None:
    async def behaviour(app: Capture) -> None:
        await app.play(BOT_AUDIO * 5, "long")  # 1 s queued
        await asyncio.sleep(0.05)
        await app.send(app.protocol.clear())

    capture = Capture(TwilioStream(), behaviour)
    extra: dict[str, Any] = {}
    async with serving(capture) as url:
        peer = StreamPeer(
            "AC" + "0" * 32,
            "CA" + "2" * 32,
            "secret",
            SimulatedCallee(CalleeScript()),
            extra,
            SCALE,
            0.0,
            lambda: None,
            lambda *a: None,
            lambda *a: None,
        )
        session = MediaStreamSession(Stream(url=url), peer)
        task = asyncio.create_task(session.run())
        await capture.wait_for(lambda f: isinstance(f, MarkAck))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(extra.get("audio_in", b"")) < len(BOT_AUDIO * 5)


# --------------------------------------------------------------------------- Telnyx


async def test_telnyx_emulator_frames_round_trip() -> None:
    async def behaviour(app: Capture) -> None:
        await app.play(BOT_AUDIO, "m1")
        await app.wait_for(lambda f: isinstance(f, MarkAck))
        await app.play(BOT_AUDIO * 5, "m2")
        await asyncio.sleep(0.02)
        await app.send(app.protocol.clear())

    capture = Capture(TelnyxStream(), behaviour)
    heard = bytearray()
    async with serving(capture) as url:
        stream = TelnyxMediaStream(
            StreamParams(
                url=url + "?token=tok-2",
                track="both_tracks",
                bidirectional_mode="rtp",
                custom_parameters={"k": "v"},
            ),
            CallInfo("user", "v3:ctrl-id_1", "sess", "+15550001111", "+15550002222", None),
            StreamListener(),
            heard,
            time_scale=SCALE,
            send_silence=True,
        )
        await stream.open()
        await stream.speak(BOT_AUDIO)
        await stream.send_dtmf("7")
        await capture.wait_for(lambda f: isinstance(f, MarkAck) and f.name == "m2")
        await stream.close()
        await capture.wait_for(lambda f: isinstance(f, Stop))
    assert capture.query == {"token": "tok-2"}
    start = capture.parsed[1]
    assert isinstance(capture.parsed[0], Connected) and isinstance(start, Start)
    assert start.call_id == "v3:ctrl-id_1" and start.stream_id == stream.stream_id
    assert start.custom_params == {"k": "v"} and start.token is None
    assert (start.encoding, start.sample_rate) == ("pcmu", 8000)
    inbound = [m for m in capture.of(Media) if m.track == "inbound"]
    outbound = [m for m in capture.of(Media) if m.track == "outbound"]
    assert BOT_AUDIO in b"".join(m.payload for m in inbound)  # the callee's audio arrived
    assert outbound and all(len(m.payload) == FRAME_BYTES for m in outbound)  # our echo
    assert [d.digit for d in capture.of(Dtmf)] == ["7"]
    assert [m.name for m in capture.of(MarkAck)] == ["m1", "m2"]
    assert bytes(heard).startswith(BOT_AUDIO) and len(heard) < len(BOT_AUDIO) * 6  # cleared


# --------------------------------------------------------------------------- Plivo


async def test_plivo_emulator_frames_round_trip() -> None:
    async def behaviour(app: Capture) -> None:
        await app.play(BOT_AUDIO, "cp1")
        await app.wait_for(lambda f: isinstance(f, MarkAck))
        await app.send(app.protocol.clear())

    capture = Capture(PlivoStream(), behaviour)
    call = EmulatedCall(
        id="c0ffee00-1111-2222-3333-444455556666",
        direction="outbound",
        from_number="+15550001111",
        to_number="+15550002222",
        callee=SimulatedCallee(CalleeScript()),
        extra={"heard_audio": bytearray()},
    )
    async with serving(capture) as url:
        leg = PlivoLeg(call, "req-1", "MA123", SCALE, Target("http://127.0.0.1:9/answer"))
        element = ET.fromstring(
            '<Stream bidirectional="true" keepCallAlive="true" extraHeaders="a=1,b=2"'
            f' contentType="audio/x-mulaw;rate=8000">{url}?token=tok-3</Stream>'
        )
        stream = PlivoEmulatorStream(leg, element, cast(Any, None))
        task = asyncio.create_task(stream.run())
        await capture.wait_for(lambda f: isinstance(f, Cleared))
        leg.end(cast(Any, object()))
        await asyncio.wait_for(task, 5)
    assert capture.query == {"token": "tok-3"}
    start = capture.parsed[0]
    assert isinstance(start, Start)
    assert start.call_id == call.id and start.stream_id == stream.log.stream_id
    assert start.custom_params == {"a": "1", "b": "2"}
    assert (start.encoding, start.sample_rate) == ("pcmu", 8000)
    media = capture.of(Media)
    assert media and all(len(m.payload) == FRAME_BYTES for m in media)
    assert [m.name for m in capture.of(MarkAck)] == ["cp1"]
    assert bytes(call.extra["heard_audio"]) == BOT_AUDIO
    assert stream.log.received[:2] == ["playAudio", "playAudio"]
    assert "checkpoint" in stream.log.received and "clearAudio" in stream.log.received


# --------------------------------------------------------------------------- builders


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_built_frames_are_json_of_the_carriers_shape(name: str) -> None:
    protocol = protocol_for(name)()
    protocol.bind(Start(call_id="CA1", stream_id="MZ1"))
    media = json.loads(protocol.media("AAAA"))
    mark = json.loads(protocol.mark('quote " and \\ back'))
    clear = json.loads(protocol.clear())
    if isinstance(protocol, PlivoStream):
        assert media == {
            "event": "playAudio",
            "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": "AAAA"},
        }
        assert mark == {"event": "checkpoint", "streamId": "MZ1", "name": 'quote " and \\ back'}
        assert clear == {"event": "clearAudio", "streamId": "MZ1"}
    elif isinstance(protocol, TelnyxStream):
        assert media == {"event": "media", "media": {"payload": "AAAA"}}
        assert mark == {"event": "mark", "mark": {"name": 'quote " and \\ back'}}
        assert clear == {"event": "clear"}
    else:
        assert media == {"event": "media", "streamSid": "MZ1", "media": {"payload": "AAAA"}}
        assert mark["mark"] == {"name": 'quote " and \\ back'} and mark["streamSid"] == "MZ1"
        assert clear == {"event": "clear", "streamSid": "MZ1"}


@settings(max_examples=300)
@given(
    name=st.sampled_from(sorted(PROTOCOLS)),
    stream_id=st.none() | st.from_regex(r"[A-Za-z0-9_.:-]{1,128}", fullmatch=True),
    audio=st.binary(max_size=480),
)
def test_the_byte_template_builds_exactly_the_media_frame(
    name: str, stream_id: str | None, audio: bytes
) -> None:
    """`media_json` (prefix + base64 + suffix, per frame) is byte for byte `media`'s text, on
    a bound stream or not."""
    protocol = protocol_for(name)()
    if stream_id is not None:
        protocol.bind(Start(call_id="CA1", stream_id=stream_id))
    expected = protocol.media(base64.b64encode(audio).decode()).encode()
    assert protocol.media_json(audio) == expected


def test_a_protocol_whose_media_frame_has_no_single_payload_is_refused() -> None:
    class Broken(TwilioStream):
        def media(self, payload_b64: str) -> str:
            return f'{{"a":"{payload_b64}","b":"{payload_b64}"}}'

    with pytest.raises(TypeError, match="exactly once"):
        Broken()


def test_bad_frames_are_named() -> None:
    twilio = TwilioStream()
    assert twilio.parse("{") == Malformed("not valid JSON")
    assert twilio.parse(b"\x00") == Malformed("binary frame: the carrier sends JSON text")
    assert twilio.parse("[]") == Malformed("not a JSON object")
    assert twilio.parse('{"event": 3}') == Malformed("no event name")
    assert twilio.parse('{"event": "media"}') == Malformed("media: media must be an object")
    bad_b64 = '{"event": "media", "media": {"payload": "***"}}'
    assert twilio.parse(bad_b64) == Malformed("media: media.payload is not valid base64")
    start = '{"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA\\"1"}}'
    assert twilio.parse(start) == Malformed("start: start.callSid has unexpected characters")
    assert twilio.parse('{"event": "dtmf", "dtmf": {"digit": "x"}}') == Malformed(
        "dtmf: dtmf digit must be one of 0-9 * # A-D"
    )
    assert twilio.parse('{"event": "future-thing"}').__class__.__name__ == "Ignored"
    with pytest.raises(ValueError, match="no media stream protocol"):
        protocol_for("skype")


# --------------------------------------------------------------------------- properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "event", "start", "media", "mark", "dtmf", "stop", "payload", "streamSid", "callSid",
        "stream_id", "call_control_id", "callId", "streamId", "customParameters",
        "custom_parameters", "mediaFormat", "media_format", "name", "digit", "track",
        "timestamp", "extra_headers", "sampleRate", "encoding",
    ]
)  # fmt: skip


@st.composite
def frames(draw: st.DrawFn, events: list[str]) -> str:
    """JSON objects shaped like frames: a real event name, real field names, any values."""
    body = draw(
        st.dictionaries(field_names, json_values | st.dictionaries(field_names, json_values))
    )
    body["event"] = draw(st.sampled_from(events) | st.text(max_size=8))
    return json.dumps(body)


ALL_EVENTS = ["connected", "start", "media", "dtmf", "mark", "stop", "error", "playedStream",
              "clearedAudio"]  # fmt: skip


@settings(max_examples=200)
@given(st.sampled_from(sorted(PROTOCOLS)), frames(ALL_EVENTS) | st.text() | st.binary())
def test_any_input_parses_to_a_frame_or_malformed(name: str, raw: str | bytes) -> None:
    result = protocol_for(name)().parse(raw)
    assert isinstance(result, Inbound)
    if isinstance(result, Malformed):
        assert result.reason
    if isinstance(result, Start):
        assert result.call_id and isinstance(result.sample_rate, int)
    if isinstance(result, Media):
        assert isinstance(result.payload, bytes)


b64_like = st.text(alphabet="ABCXYZabxyz0189+/=\n -_é\x00", max_size=24) | st.binary(
    max_size=18
).map(lambda b: base64.b64encode(b).decode())


@settings(max_examples=500)
@given(st.sampled_from(sorted(PROTOCOLS)), b64_like)
def test_media_payloads_decode_exactly_as_strict_b64decode(name: str, payload: str) -> None:
    """The payload decoder accepts what `b64decode(validate=True)` accepts, nothing else."""
    try:
        expected: Inbound = Media(base64.b64decode(payload, validate=True))
    except ValueError:  # binascii.Error included
        expected = Malformed("media: media.payload is not valid base64")
    frame = json.dumps({"event": "media", "media": {"payload": payload}})
    assert protocol_for(name)().parse(frame) == expected


def _json_outcome(text: str) -> tuple[str, str]:
    try:
        return "value", json.dumps(json.loads(text))  # dumps: NaN compares equal as text
    except (ValueError, RecursionError) as exc:
        return "error", type(exc).__name__


@settings(max_examples=500)
@given(
    st.builds(json.dumps, json_values)
    | st.text(alphabet=' \t\n{}[]":,0123456789.eE-+truefalsnNaI\\x', max_size=20)
    | st.tuples(
        st.sampled_from(["", " ", "\n"]),
        st.builds(json.dumps, json_values),
        st.text(alphabet=" \n}x", max_size=2),
    ).map("".join)
)
def test_the_fast_json_loads_is_json_loads(text: str) -> None:
    try:
        ours = "value", json.dumps(loads(text))
    except (ValueError, RecursionError) as exc:
        ours = "error", type(exc).__name__
    assert ours == _json_outcome(text)
