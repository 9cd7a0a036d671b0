"""Telnyx media streaming: the emulator connects to the app's WebSocket and speaks its frames."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.sim.telnyx.app import API_KEY, running
from voice_call.audio.g711 import FRAME_BYTES, SILENCE_BYTE
from voice_call.sim.callee import CalleeScript
from voice_call.sim.telnyx import TelnyxEmulator
from voice_call.sim.voice import speech_audio

SCALE = 0.05
BOT_AUDIO = bytes(range(1, 161)) * 20  # 400 ms of µ-law from "the bot"


class MediaServer:
    """The app's WebSocket end: records every frame, plays a greeting, can clear."""

    def __init__(self, greeting: bytes = BOT_AUDIO, clear_after_ms: int | None = None) -> None:
        self.frames: list[dict[str, Any]] = []
        self.headers: dict[str, str] = {}
        self.greeting = greeting
        self.clear_after_ms = clear_after_ms
        self.closed = asyncio.Event()

    def of(self, event: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["event"] == event]

    def inbound_audio(self) -> bytes:
        return b"".join(
            base64.b64decode(f["media"]["payload"])
            for f in self.of("media")
            if f["media"]["track"] == "inbound"
        )

    async def serve(self, ws: WebSocket) -> None:
        self.headers = dict(ws.headers)
        await ws.accept()
        try:
            while True:
                frame = json.loads(await ws.receive_text())
                self.frames.append(frame)
                if frame["event"] == "start":
                    await self._greet(ws)
                if frame["event"] == "stop":
                    break
        except WebSocketDisconnect:
            pass
        self.closed.set()

    async def _greet(self, ws: WebSocket) -> None:
        if not self.greeting:
            return
        half = len(self.greeting) // 2
        for chunk in (self.greeting[:half], self.greeting[half:]):
            payload = base64.b64encode(chunk).decode()
            await ws.send_text(json.dumps({"event": "media", "media": {"payload": payload}}))
        await ws.send_text(json.dumps({"event": "mark", "mark": {"name": "greeting"}}))
        if self.clear_after_ms is not None:
            await asyncio.sleep(self.clear_after_ms / 1000 * SCALE)
            await ws.send_text(json.dumps({"event": "clear"}))


async def test_bidirectional_rtp_stream_from_dial() -> None:
    media = MediaServer()
    script = CalleeScript(answer_delay_ms=100, replies=("Yes please",), reply_delay_ms=200)
    emu = TelnyxEmulator(API_KEY, script=script, time_scale=SCALE)
    async with running(emu, stream_handler=media.serve) as app:
        stream_url = app.url.replace("http://", "ws://") + "/media"
        response = await app.dial(
            stream_url=stream_url,
            stream_track="both_tracks",
            stream_bidirectional_mode="rtp",
            stream_bidirectional_codec="PCMU",
            custom_parameters=[{"name": "customer_id", "value": "c-7"}],
            stream_auth_token="secret-token",
        )
        call_id = response.json()["data"]["call_control_id"]
        call = emu.calls[call_id]
        await app.wait_for("streaming.started")
        # The callee hears the greeting, then says its line on the inbound track.
        line = speech_audio("Yes please")
        line += bytes([SILENCE_BYTE]) * (-len(line) % FRAME_BYTES)
        for _ in range(500):
            if line in media.inbound_audio():
                break
            await asyncio.sleep(0.01)
        await app.command(call_id, "hangup")
        await emu.wait_ended(call_id)
        await asyncio.wait_for(media.closed.wait(), 2)

    assert app.types(call_id) == [
        "call.initiated",
        "call.answered",
        "streaming.started",
        "streaming.stopped",
        "call.hangup",
    ]
    assert app.payload("streaming.started")["stream_url"] == stream_url
    assert media.headers["x-telnyx-streaming-auth-token"] == "secret-token"

    connected, start = media.frames[0], media.frames[1]
    assert connected["event"] == "connected"
    assert connected["version"] == "1.0.0"
    assert start["event"] == "start"
    assert start["start"]["call_control_id"] == call_id
    assert start["start"]["media_format"] == {
        "encoding": "PCMU",
        "sample_rate": 8000,
        "channels": 1,
    }
    assert start["start"]["custom_parameters"] == {"customer_id": "c-7"}
    assert start["stream_id"] == call.extra["stream_id"]
    assert media.frames[-1]["event"] == "stop"
    assert media.frames[-1]["stop"]["call_control_id"] == call_id

    numbered = media.frames[1:]
    sequence = [int(f["sequence_number"]) for f in numbered]
    assert sequence == list(range(1, len(numbered) + 1))
    assert all(f["stream_id"] == start["stream_id"] for f in numbered)

    inbound = [f for f in media.of("media") if f["media"]["track"] == "inbound"]
    assert [int(f["media"]["chunk"]) for f in inbound] == list(range(1, len(inbound) + 1))
    assert all(len(base64.b64decode(f["media"]["payload"])) == FRAME_BYTES for f in inbound)
    stamps = [int(f["media"]["timestamp"]) for f in inbound]
    assert stamps == sorted(stamps)
    assert line in media.inbound_audio()  # the callee's words, whole and in order

    # The bot's audio was played to the callee, echoed on the outbound track, then marked.
    assert bytes(call.extra["audio_in"]) == BOT_AUDIO
    outbound = [f for f in media.of("media") if f["media"]["track"] == "outbound"]
    assert b"".join(base64.b64decode(f["media"]["payload"]) for f in outbound) == BOT_AUDIO
    marks = media.of("mark")
    assert [m["mark"]["name"] for m in marks] == ["greeting"]
    assert media.frames.index(marks[0]) > media.frames.index(outbound[-1])
    assert call.callee.heard == ["[audio 400 ms]"]
    assert call.callee.said == ["Yes please"]


async def test_streaming_start_and_stop_commands() -> None:
    media = MediaServer(greeting=b"")
    script = CalleeScript(answer_delay_ms=100, silent=True)
    emu = TelnyxEmulator(API_KEY, script=script, time_scale=SCALE, stream_silence=False)
    async with running(emu, stream_handler=media.serve) as app:
        call_id = (await app.dial()).json()["data"]["call_control_id"]
        await app.wait_for("call.answered")
        stream_url = app.url.replace("http://", "ws://") + "/media"
        response = await app.command(call_id, "streaming_start", stream_url=stream_url)
        assert response.status_code == 200
        await app.wait_for("streaming.started")
        await app.command(call_id, "streaming_stop")
        await app.wait_for("streaming.stopped")
        await asyncio.wait_for(media.closed.wait(), 2)
        assert [f["event"] for f in media.frames] == ["connected", "start", "stop"]
        await app.command(call_id, "hangup")
        await emu.wait_ended(call_id)
        assert app.types(call_id)[-1] == "call.hangup"
        assert app.types(call_id).count("streaming.stopped") == 1


async def test_clear_drops_queued_audio_and_returns_marks() -> None:
    media = MediaServer(greeting=bytes(range(1, 161)) * 500, clear_after_ms=200)  # 10 s queued
    script = CalleeScript(answer_delay_ms=100, silent=True)
    emu = TelnyxEmulator(API_KEY, script=script, time_scale=SCALE, stream_silence=False)
    async with running(emu, stream_handler=media.serve) as app:
        stream_url = app.url.replace("http://", "ws://") + "/media"
        call_id = (await app.dial(stream_url=stream_url, stream_bidirectional_mode="rtp")).json()[
            "data"
        ]["call_control_id"]
        await app.wait_for("streaming.started")
        for _ in range(300):
            if media.of("mark"):
                break
            await asyncio.sleep(0.01)
        heard = len(emu.calls[call_id].extra["audio_in"])
        assert [m["mark"]["name"] for m in media.of("mark")] == ["greeting"]
        assert 0 < heard < 80000  # cut short: less than the 10 s sent
        assert emu.calls[call_id].callee.heard == [f"[audio {heard // 8} ms]"]
        await app.command(call_id, "hangup")
        await emu.wait_ended(call_id)


async def test_unreachable_stream_url_sends_streaming_failed() -> None:
    emu = TelnyxEmulator(API_KEY, script=CalleeScript(answer_delay_ms=100), time_scale=SCALE)
    async with running(emu) as app:
        call_id = (
            await app.dial(stream_url=app.url.replace("http://", "ws://") + "/no-socket-here")
        ).json()["data"]["call_control_id"]
        failed = await app.wait_for("streaming.failed")
        assert failed["data"]["payload"]["failure_reason"]
        await app.command(call_id, "hangup")
        await emu.wait_ended(call_id)
        assert "streaming.started" not in app.types(call_id)
        assert "streaming.stopped" not in app.types(call_id)


async def test_mp3_mode_payloads_are_kept_and_heard() -> None:
    async def send_mp3(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_text()  # connected
        await ws.receive_text()  # start
        payload = base64.b64encode(b"ID3fake-mp3").decode()
        await ws.send_text(json.dumps({"event": "media", "media": {"payload": payload}}))
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            return

    emu = TelnyxEmulator(
        API_KEY, script=CalleeScript(answer_delay_ms=100, silent=True), time_scale=SCALE
    )
    async with running(emu, stream_handler=send_mp3) as app:
        stream_url = app.url.replace("http://", "ws://") + "/media"
        call_id = (await app.dial(stream_url=stream_url)).json()["data"]["call_control_id"]
        for _ in range(200):
            if emu.calls[call_id].extra["mp3_in"]:
                break
            await asyncio.sleep(0.01)
        assert emu.calls[call_id].extra["mp3_in"] == [b"ID3fake-mp3"]
        assert emu.calls[call_id].callee.heard == ["[mp3 11 bytes]"]
        await app.command(call_id, "hangup")
        await emu.wait_ended(call_id)
