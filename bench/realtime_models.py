"""Lean stand-ins for the realtime model services, for the load benchmark only.

The protocol fakes in `voice_call.sim` (FakeOpenAI's conversation socket, FakeGeminiLive) decode
every appended frame, run an energy VAD over it and synthesise each answer; at hundreds of calls
that alone would take more than the load process's core. These speak just enough of the same
wire protocols to keep a bridged call busy the whole time, from audio made once before the run:
the handshake (`session.created` → `session.update` → `session.updated`; Gemini: `setup` →
`setupComplete`), then one answer after another, each `REPLY_S` long, in chunks sent on the
chunk clock with `LEAD_MS` of audio ahead (a service generates faster than real time), each chunk
with a word of output transcript; a `response.done` (Gemini: `generationComplete`,
`turnComplete`) after each. What the bridge sends them is read and counted, not decoded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any, Literal

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from voice_call.sim.ai_http import speech_pcm16
from voice_call.sim.voice import synthetic_speech

REPLY = (
    "Thanks for calling. Your appointment is on Tuesday at three in the afternoon. "
    "Please bring your insurance card and arrive ten minutes early."
)
LEAD_MS = 200  # audio sent ahead of real time: the bridge's pacer never runs dry
Kind = Literal["openai", "google"]
# the chunk each service sends: OpenAI's deltas are ~100 ms; Gemini Live's are smaller
CHUNK_MS: dict[str, int] = {"openai": 100, "google": 40}


def reply_chunks(kind: Kind) -> list[str]:
    """The answer's audio, base64 chunk by chunk, in the service's own output format."""
    ms = CHUNK_MS[kind]
    if kind == "openai":
        audio, size = synthetic_speech(REPLY), 8 * ms  # µ-law 8 kHz
    else:
        audio, size = speech_pcm16(REPLY, 24000), 48 * ms  # PCM16 24 kHz
    return [base64.b64encode(audio[i : i + size]).decode() for i in range(0, len(audio), size)]


class StreamingModel:
    """A loopback WebSocket service whose every session talks without pause."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.chunk_s = CHUNK_MS[kind] / 1000
        self.chunks = reply_chunks(kind)
        self.words = REPLY.split()
        self.received = 0  # messages from the bridges (audio, mostly)
        self.sent = 0
        self.sessions = 0
        self._server: Server | None = None

    async def __aenter__(self) -> StreamingModel:
        self._server = await serve(
            self._session, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        path = "/v1/realtime" if self.kind == "openai" else "/ws/live"
        return f"ws://127.0.0.1:{port}{path}"

    async def _session(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._handshake(ws)
            self.sessions += 1
            talker = asyncio.create_task(self._talk(ws))
            try:
                async for _ in ws:
                    self.received += 1
            finally:
                talker.cancel()

    async def _handshake(self, ws: ServerConnection) -> None:
        if self.kind == "google":
            await ws.recv()  # the setup
            await ws.send('{"setupComplete":{}}')
            return
        session: dict[str, Any] = {"id": "sess_bench", "type": "realtime"}
        await ws.send(json.dumps({"type": "session.created", "session": session}))
        while '"session.update"' not in str(await ws.recv()):
            pass
        await ws.send(json.dumps({"type": "session.updated", "session": session}))

    async def _talk(self, ws: ServerConnection) -> None:
        turn = 0
        with contextlib.suppress(ConnectionClosed):
            while True:
                turn += 1
                await self._answer(ws, turn)

    async def _answer(self, ws: ServerConnection, turn: int) -> None:
        openai = self.kind == "openai"
        rid, item = f"resp_{turn}", f"item_{turn}"
        if openai:
            created = {"type": "response.created", "response": {"id": rid, "status": "in_progress"}}
            await ws.send(json.dumps(created))
            audio = (
                f'{{"type":"response.output_audio.delta","response_id":"{rid}",'
                f'"item_id":"{item}","output_index":0,"content_index":0,"delta":"'
            )
            words = (
                f'{{"type":"response.output_audio_transcript.delta","response_id":"{rid}",'
                f'"item_id":"{item}","output_index":0,"content_index":0,"delta":'
            )
        else:
            audio = (
                '{"serverContent":{"modelTurn":{"parts":[{"inlineData":'
                '{"mimeType":"audio/pcm;rate=24000","data":"'
            )
            words = '{"serverContent":{"outputTranscription":{"text":'
        loop = asyncio.get_running_loop()
        start = loop.time()
        lead = LEAD_MS / 1000
        said = 0
        for index, chunk in enumerate(self.chunks):
            due = start + index * self.chunk_s - lead
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            await ws.send(audio + chunk + ('"}' if openai else '"}}]}}}'))
            self.sent += 1
            due_words = len(self.words) * (index + 1) // len(self.chunks)
            if due_words > said:
                text = json.dumps(" ".join(self.words[said:due_words]) + " ")
                said = due_words
                await ws.send(words + text + ("}" if openai else "}}}"))
                self.sent += 1
        # the answer is said once it has played: the next one starts when this one would end
        end = start + len(self.chunks) * self.chunk_s - lead
        if openai:
            done = {"type": "response.done", "response": {"id": rid, "status": "completed"}}
            await ws.send(json.dumps(done))
        else:
            await ws.send('{"serverContent":{"generationComplete":true}}')
        if end > loop.time():
            await asyncio.sleep(end - loop.time())
        if not openai:
            await ws.send('{"serverContent":{"turnComplete":true}}')
