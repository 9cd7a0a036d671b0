"""Live listen-in: a streamed or realtime call's audio, both ways mixed, to a console page.

`POST /console/api/calls/{id}/listen` answers with a never-ending `audio/basic` body (µ-law,
8 kHz, mono) of what the caller said and what the bot sent, mixed on the stream's frame clock
(media/tap.py), until the call's stream ends or the page stops reading. It is a POST behind
the console session, its CSRF token and a same-origin check, like the controls: hearing a
call is at least as sensitive as steering one. Nothing is stored; each listen-in is logged.

A slow reader is not allowed to hold audio back or grow memory: past `QUEUE_FRAMES` queued
frames the newest are dropped (the listener hears a gap, the call is untouched).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import numpy as np
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from voice_call.audio.g711 import FRAME_BYTES, SILENCE_BYTE, pcm16_to_ulaw, ulaw_to_pcm16
from voice_call.media.recorder import Slot, SlotAligner
from voice_call.runtime import Runtime
from voice_call.server.console.guard import refuse_write, secured, session_of
from voice_call.server.console.sessions import ConsoleSessions
from voice_call.server.responses import json_error

log = logging.getLogger("voice_call.console")

HOLD_SLOTS = 5  # 100 ms: a caller frame for the same instant as ours is mixed in, not after
QUEUE_FRAMES = 250  # 5 s of audio waiting for a slow page, then frames are dropped
SILENT = bytes([SILENCE_BYTE]) * FRAME_BYTES
NOT_LIVE = (
    "call {call_id} has no live media stream here: listen-in works on streamed or realtime"
    " calls while they are live"
)
HELD_ELSEWHERE = (
    "call {call_id}'s media stream is held by instance {holder}, not this one: listen-in"
    " works only on the instance holding the stream"
)


class Mixer:
    """A tap listener: both sides of each slot summed into one µ-law frame, for one page."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.dropped = 0
        self._aligner = SlotAligner(self._mix, hold=HOLD_SLOTS)
        self._closed = False

    def frame(self, side: str, slot: int, ulaw: bytes) -> None:
        self._aligner.add(side, slot, ulaw)

    def _mix(self, slots: list[Slot]) -> None:
        for _, caller, bot in slots:
            if self.frames.qsize() >= QUEUE_FRAMES:
                self.dropped += 1
                continue
            self.frames.put_nowait(_mixed(caller, bot))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._aligner.flush()
            self.frames.put_nowait(None)


def _mixed(caller: bytes | None, bot: bytes | None) -> bytes:
    if caller is None or bot is None:
        return caller or bot or SILENT
    total = ulaw_to_pcm16(caller).astype(np.int32) + ulaw_to_pcm16(bot).astype(np.int32)
    return pcm16_to_ulaw(np.clip(total, -32768, 32767).astype(np.int16))


class ListenIn:
    def __init__(self, runtime: Runtime, sessions: ConsoleSessions) -> None:
        self.runtime = runtime
        self.sessions = sessions

    async def listen(self, request: Request) -> Response:
        refused = refuse_write(request, session_of(request, self.sessions))
        if refused is not None:
            return refused
        call_id = request.path_params["call_id"]
        record = await self.runtime.store.get(call_id) if len(call_id) <= 128 else None
        if record is None:
            return secured(json_error(404, f"no call with id {call_id!r}"))
        mixer = Mixer()
        media = self.runtime.media
        if record.terminal or not media.listen(call_id, mixer):
            holder = None if record.terminal else await media.held_elsewhere(call_id)
            refusal = NOT_LIVE if holder is None else HELD_ELSEWHERE  # at another instance
            return secured(json_error(409, refusal.format(call_id=call_id, holder=holder)))
        client = request.client.host if request.client is not None else "?"
        log.info("console listen-in on call %s from %s", call_id, client)
        return secured(
            StreamingResponse(
                self._audio(call_id, mixer),
                media_type="audio/basic",
                headers={"X-Audio-Format": "mulaw;rate=8000;channels=1"},
            )
        )

    async def _audio(self, call_id: str, mixer: Mixer) -> AsyncIterator[bytes]:
        try:
            while (frame := await mixer.frames.get()) is not None:
                yield frame
        finally:
            with contextlib.suppress(Exception):
                self.runtime.media.unlisten(call_id, mixer)
            log.info("console listen-in on call %s over", call_id)
