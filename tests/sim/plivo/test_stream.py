"""Plivo `<Stream>`: the emulator dials the app's WebSocket (docs/carriers.md §3.5)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.sim.plivo.app import AUTH_ID, FakeApp, SdkClient, running, sdk_call
from voice_call.audio.g711 import FRAME_BYTES, SILENCE_BYTE
from voice_call.sim.callee import CalleeScript
from voice_call.sim.plivo.stream import StreamLog


def tone(frames: int, level: int = 0x20) -> bytes:
    return bytes([level]) * (FRAME_BYTES * frames)


def play(audio: bytes) -> str:
    media = {"contentType": "audio/x-mulaw", "sampleRate": 8000}
    return json.dumps({"event": "playAudio", "media": media | {"payload": b64(audio)}})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Peer:
    """The app's end of the socket: reads frames, counting the media ones it skips."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.media: list[dict[str, Any]] = []
        self.others: list[dict[str, Any]] = []

    async def next(self, event: str) -> dict[str, Any]:
        while True:
            frame = json.loads(await self.ws.receive_text())
            (self.media if frame["event"] == "media" else self.others).append(frame)
            if frame["event"] == event:
                return dict(frame)

    async def send(self, **frame: Any) -> None:
        await self.ws.send_text(json.dumps(frame))


def stream_xml(app: FakeApp, attributes: str, after: str = "") -> str:
    status = f'statusCallbackUrl="{app.url("/stream-status")}"'
    return f"<Response><Stream {attributes} {status}>{app.ws_url()}</Stream>{after}</Response>"


async def test_bidirectional_stream_plays_checkpoints_clears_and_hears_the_callee() -> None:
    app = FakeApp()
    app.replies["/answer"] = lambda _: stream_xml(
        app,
        'bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000" '
        'extraHeaders="tenant=a1,lang=en"',
        "<Speak>Bye now</Speak>",
    )
    seen: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        peer = Peer(ws)
        seen["start"] = start = await peer.next("start")
        stream_id = start["start"]["streamId"]
        for _ in range(5):
            await peer.next("media")
        # one second of audio, then a checkpoint: acknowledged only once it has all played
        await ws.send_text(play(tone(50)))
        await peer.send(event="checkpoint", streamId=stream_id, name="first")
        before = len(peer.media)
        seen["played"] = await peer.next("playedStream")
        seen["frames_while_playing"] = len(peer.media) - before
        # the callee heard a turn, waits its reply delay, and speaks: non-silent caller audio
        while True:
            frame = await peer.next("media")
            if set(base64.b64decode(frame["media"]["payload"])) != {SILENCE_BYTE}:
                break
        # barge-in: queue two seconds and a checkpoint, then clear them
        await ws.send_text(play(tone(100, 0x30)))
        await peer.send(event="checkpoint", streamId=stream_id, name="dropped")
        await peer.send(event="clearAudio", streamId=stream_id)
        seen["cleared"] = await peer.next("clearedAudio")
        for _ in range(30):
            await peer.next("media")
        seen["media"] = peer.media
        seen["others"] = [f["event"] for f in peer.others]
        await ws.close()

    app.stream = handler
    script = CalleeScript(replies=("yes please",), reply_delay_ms=200)
    async with running(app, script=script) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app), timeout=20)

    start = seen["start"]
    assert start["sequenceNumber"] == 1 and start["extra_headers"] == "{tenant: a1, lang: en}"
    assert start["start"] == {
        "callId": call.id,
        "streamId": start["start"]["streamId"],
        "accountId": AUTH_ID,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
    }
    media = seen["media"]
    numbers = [m["sequenceNumber"] for m in media]  # one counter for every frame sent
    assert numbers[0] == 2 and all(a < b for a, b in itertools.pairwise(numbers))
    assert [m["media"]["chunk"] for m in media] == list(range(1, len(media) + 1))
    stamps = [int(m["media"]["timestamp"]) for m in media]
    assert all(b - a == 20 for a, b in itertools.pairwise(stamps))
    assert {len(base64.b64decode(m["media"]["payload"])) for m in media} == {FRAME_BYTES}
    assert {m["media"]["track"] for m in media} == {"inbound"}
    assert seen["played"]["name"] == "first"
    assert seen["frames_while_playing"] >= 48  # paced: ~one caller frame per played frame
    assert seen["cleared"]["streamId"] == start["start"]["streamId"]
    assert "playedStream" in seen["others"] and seen["others"].count("playedStream") == 1
    log: StreamLog = call.extra["streams"][0]
    assert log.checkpoints == ["first"] and log.cleared == 1 and log.closed_by == "app"
    assert log.received[:3] == ["playAudio", "checkpoint", "playAudio"]
    heard = bytes(call.extra["heard_audio"])
    assert heard.startswith(tone(50)) and len(heard) < FRAME_BYTES * 150
    assert call.callee.heard[0] == "[audio 1000 ms]"
    assert call.callee.said == ["yes please"]
    assert call.callee.heard[-1] == "Bye now"  # keepCallAlive: the XML went on after the socket
    statuses = [h.params["Event"] for h in emu.webhooks if h.kind == "stream"]
    assert statuses == ["StartStream", "StopStream"]
    assert all(r.signature_ok for r in app.received)


async def test_default_stream_is_inbound_l16_and_ignores_play_audio() -> None:
    app = FakeApp()
    app.replies["/answer"] = lambda _: stream_xml(app, "", "<Wait length='3'/>")
    seen: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        peer = Peer(ws)
        seen["start"] = await peer.next("start")
        await ws.send_text(play(tone(10)))  # not bidirectional: Plivo ignores it
        seen["frame"] = await peer.next("media")
        try:
            while True:
                await peer.next("media")
        except WebSocketDisconnect:
            seen["closed"] = True

    app.stream = handler
    async with running(app) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert seen["start"]["start"]["mediaFormat"] == {"encoding": "audio/x-l16", "sampleRate": 8000}
    assert len(base64.b64decode(seen["frame"]["media"]["payload"])) == 2 * FRAME_BYTES
    assert seen.get("closed") and bytes(call.extra["heard_audio"]) == b""
    log: StreamLog = call.extra["streams"][0]
    assert log.closed_by == "call" and log.played_frames == 0
    assert [h.kind for h in emu.webhooks][-3:] == ["stream", "stream", "hangup"]


async def test_l16_16k_both_ways() -> None:
    app = FakeApp()
    app.replies["/answer"] = lambda _: stream_xml(
        app, 'bidirectional="true" keepCallAlive="true" contentType="audio/x-l16;rate=16000"'
    )
    seen: dict[str, Any] = {}

    async def handler(ws: WebSocket) -> None:
        peer = Peer(ws)
        seen["start"] = await peer.next("start")
        seen["frame"] = await peer.next("media")
        pcm = (b"\x00\x10" * 320) * 10  # 200 ms of 16 kHz little-endian PCM
        media = {"contentType": "audio/x-l16", "sampleRate": 16000, "payload": b64(pcm)}
        await peer.send(event="playAudio", media=media)
        await peer.send(event="checkpoint", streamId="s", name="done")
        await peer.next("playedStream")
        await ws.close()

    app.stream = handler
    async with running(app) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert seen["start"]["start"]["mediaFormat"]["sampleRate"] == 16000
    assert len(base64.b64decode(seen["frame"]["media"]["payload"])) == 4 * FRAME_BYTES
    assert len(call.extra["heard_audio"]) == 10 * FRAME_BYTES


async def test_hangup_during_a_stream_closes_the_socket_first() -> None:
    app = FakeApp()
    app.replies["/answer"] = lambda _: stream_xml(app, 'bidirectional="true" keepCallAlive="true"')
    closed = asyncio.Event()

    async def handler(ws: WebSocket) -> None:
        peer = Peer(ws)
        try:
            while True:
                await peer.next("media")
        except WebSocketDisconnect:
            closed.set()

    app.stream = handler
    async with running(app) as emu:
        request_uuid = await sdk_call(emu, app)
        await emu.webhooks.wait_for(lambda h: h.params.get("Event") == "StartStream")
        await asyncio.to_thread(SdkClient(emu.url).calls.delete, request_uuid)
        call = await emu.wait_ended(request_uuid)
        await asyncio.wait_for(closed.wait(), 5)
    assert call.extra["streams"][0].closed_by == "call"
    order = [h.params.get("Event") for h in emu.webhooks if h.kind in ("stream", "hangup")]
    assert order == ["StartStream", "StopStream", "Hangup"]
    assert app.of("/hangup")[0].params["HangupSource"] == "API Request"


async def test_transfer_ends_a_blocking_stream() -> None:
    app = FakeApp()
    app.replies["/answer"] = lambda _: stream_xml(app, 'bidirectional="true" keepCallAlive="true"')
    app.replies["/moved"] = "<Response><Speak>Moved on</Speak></Response>"

    async def handler(ws: WebSocket) -> None:
        peer = Peer(ws)
        try:
            while True:
                await peer.next("media")
        except WebSocketDisconnect:
            pass

    app.stream = handler
    async with running(app) as emu:
        request_uuid = await sdk_call(emu, app)
        await emu.webhooks.wait_for(lambda h: h.params.get("Event") == "StartStream")
        await asyncio.to_thread(
            SdkClient(emu.url).calls.transfer, request_uuid, legs="aleg", aleg_url=app.url("/moved")
        )
        call = await emu.wait_ended(request_uuid)
    assert call.extra["streams"][0].closed_by == "transfer"
    assert call.callee.heard == ["Moved on"]


async def test_unreachable_stream_is_dropped_and_the_xml_goes_on() -> None:
    app = FakeApp()
    app.replies["/answer"] = lambda _: (
        "<Response><Stream keepCallAlive='true' "
        f'statusCallbackUrl="{app.url("/stream-status")}">ws://127.0.0.1:9/nowhere</Stream>'
        "<Speak>Still here</Speak></Response>"
    )
    async with running(app) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    status = app.of("/stream-status")[0].params
    assert status["Event"] == "DroppedStream" and status["Error"]
    assert call.extra["streams"][0].closed_by == "error"
    assert call.callee.heard == ["Still here"]
