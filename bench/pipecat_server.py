"""The pipecat side of `python -m bench vs_pipecat`: N Twilio media streams on one pipecat server.

Run by `bench/vs_pipecat.py` with the Python of pipecat's own virtualenv (never ours: pipecat is
not a dependency of this project), so it imports only the standard library, pipecat and what
pipecat's websocket extra installs. It speaks the same stdin/stdout protocol as
`bench/streams_server.py`: one JSON line with the port and each call's ids once listening, then
`quit` on stdin stops it.

Each stream is pipecat's own Twilio recipe with no AI services: FastAPI's websocket route reads
Twilio's `connected` and `start` messages, then runs `transport.input() → Speaker →
transport.output()` with the `TwilioFrameSerializer` (auto hang-up off: no Twilio account),
8 kHz in and out, 20 ms output chunks (`audio_out_10ms_chunks=2`; pipecat's default is 40 ms).
`Speaker` plays like a streaming TTS: 200 ms chunks of 16-bit PCM (a 440 Hz tone), kept 400 ms
ahead of real time so the output transport always has audio to send, as our bench's server
always has a reply to play. `--lean` turns off what a `PipelineWorker` adds by default (the RTVI
processor and observer, turn tracking, the idle-timeout observer); without it, its defaults.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import math
import os
import socket
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket
from loguru import logger
from pipecat.frames.frames import Frame, StartFrame, TTSAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.workers.runner import WorkerRunner

RATE = 8000
CHUNK_S = 0.2  # what our bench's fake TTS hands over at a time (`chunkMs: 200`)
AHEAD_S = 0.4


def tone(seconds: float) -> bytes:
    samples = int(RATE * seconds)
    wave = array.array(
        "h", (int(8000 * math.sin(2 * math.pi * 440 * i / RATE)) for i in range(samples))
    )
    return wave.tobytes()


CHUNK = tone(CHUNK_S)


class Speaker(FrameProcessor):
    """Plays audio the whole call, like a TTS service streaming one reply after another."""

    def __init__(self) -> None:
        super().__init__()
        self._task: asyncio.Task[None] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame) and self._task is None:
            self._task = self.create_task(self._speak())

    async def _speak(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            await self.push_frame(TTSAudioRawFrame(CHUNK, sample_rate=RATE, num_channels=1))
            due += CHUNK_S
            await asyncio.sleep(max(0.0, due - AHEAD_S - loop.time()))

    async def cleanup(self) -> None:
        if self._task is not None:
            await self.cancel_task(self._task)
            self._task = None
        await super().cleanup()


def app(lean: bool) -> FastAPI:
    api = FastAPI()
    # RTVI, turn tracking and the idle observer are on by default; `lean` turns them off.
    task_options: dict[str, Any] = (
        {"enable_rtvi": False, "enable_turn_tracking": False, "idle_timeout_secs": None}
        if lean
        else {}
    )

    @api.websocket("/voice/stream")
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()  # Twilio's "connected"
        start = json.loads(await websocket.receive_text())
        serializer = TwilioFrameSerializer(
            stream_sid=start["streamSid"],
            call_sid=start["start"]["callSid"],
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
        )
        transport = FastAPIWebsocketTransport(
            websocket,
            FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                add_wav_header=False,
                audio_out_10ms_chunks=2,
                serializer=serializer,
            ),
        )
        pipeline = Pipeline([transport.input(), Speaker(), transport.output()])
        params = PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE)
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(PipelineWorker(pipeline, params=params, **task_options))
        await runner.run()

    return api


async def main(streams: int, lean: bool) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app(lean), log_level="warning", lifespan="off", backlog=4096)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110  (uvicorn offers no event for this)
        await asyncio.sleep(0.05)
    calls = [[f"CA{i:032x}", "-"] for i in range(streams)]
    print(json.dumps({"port": sock.getsockname()[1], "calls": calls}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        if line == "quit":
            break
    server.should_exit = True
    server.force_exit = True
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(serving, 10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--core", type=int, default=None)
    parser.add_argument("--lean", action="store_true", help="no RTVI, turn tracking, idle observer")
    args = parser.parse_args()
    if args.core is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {args.core})
    # pipecat logs at DEBUG to stderr by default; warnings only, as our server logs.
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    asyncio.run(main(args.streams, args.lean))
