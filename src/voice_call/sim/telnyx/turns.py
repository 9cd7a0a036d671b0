"""When the simulated callee talks on a Telnyx call.

The callee hears what the app makes Telnyx say (speak, gather prompts, playback, stream audio)
once it has finished playing; it may then hang up (`hangup_after_turns`). It says its next line
when the app listens (transcription on, or an inbound media stream open) and the bot is quiet,
`reply_delay_ms` later; if the bot starts talking first, it waits for the bot to finish. It
speaks when first listened to (a person says "hello?"), then once after each bot utterance.
The line reaches the app as `call.transcription` webhooks and/or µ-law on the inbound track.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from voice_call.sim.callee import SimulatedCallee
from voice_call.sim.telnyx import params
from voice_call.sim.telnyx.stream import TelnyxMediaStream
from voice_call.sim.voice import speech_audio

Body = dict[str, Any]


class TalkingLeg(Protocol):
    """What the callee's turn-taking needs from its call (call.py's `TelnyxCall`)."""

    callee: SimulatedCallee
    is_ended: bool

    @property
    def stream(self) -> TelnyxMediaStream | None: ...

    def post(self, event_type: str, payload: Body) -> None: ...
    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...
    async def sleep(self, seconds: float) -> None: ...
    def remote_hangup(self) -> None: ...


def speech_seconds(text: str) -> float:
    """How long saying `text` takes: about 15 characters a second, at least half a second."""
    return max(0.5, len(text) / 15)


class CalleeTurns:
    def __init__(self, leg: TalkingLeg) -> None:
        self.leg = leg
        self.speaking = 0  # bot outputs playing now (speak, playback, gather prompts)
        self.gathering = False
        self.transcribing = False
        self.tracks = "inbound"
        self.interim = False
        self.wants_to_speak = True
        self._reply: asyncio.Task[None] | None = None
        self._waiting = False  # the reply task is still in its reply delay

    # -- transcription ---------------------------------------------------------------------------

    def start_transcription(self, body: Body) -> None:
        self.tracks = params.choice(
            body, "transcription_tracks", ("inbound", "outbound", "both"), "inbound"
        )
        config = body.get("transcription_engine_config") or {}
        # Interim results are a Google-engine option; accepted at either level.
        self.interim = bool(body.get("interim_results") or config.get("interim_results"))
        self.transcribing = True
        self.maybe_reply()

    def stop_transcription(self) -> None:
        self.transcribing = False
        self._cancel_waiting_reply()

    def post_transcript(self, transcript: str, final: bool, track: str) -> None:
        self.leg.post(
            "call.transcription",
            {
                "transcription_data": {
                    "transcript": transcript,
                    "confidence": 0.93 if final else 0.6,
                    "is_final": final,
                    "transcription_track": track,
                }
            },
        )

    # -- the bot talks ---------------------------------------------------------------------------

    def bot_started(self) -> None:
        """The bot talks: a callee still waiting to reply waits for it to finish."""
        self._cancel_waiting_reply()

    def bot_finished(
        self, heard: str, *, interrupted: bool = False, outbound_text: str | None = None
    ) -> None:
        """The bot's utterance has played to the end (or was cleared): the callee heard it."""
        if self.leg.is_ended:
            return
        if outbound_text and self.transcribing and self.tracks != "inbound":
            self.post_transcript(outbound_text, True, "outbound")
        if self.gathering:
            return  # a gather prompt: the callee answers with keys, not words
        if self.leg.callee.hear(heard):
            self.leg.spawn(self.hang_up_soon())
            return
        if not interrupted:
            self.wants_to_speak = True
        self.maybe_reply()

    def answered_with_keys(self) -> None:
        self.wants_to_speak = False
        self.maybe_reply()

    async def hang_up_soon(self) -> None:
        await self.leg.sleep(self.leg.callee.script.reply_delay_ms / 1000)
        self.leg.remote_hangup()

    # -- the callee talks ------------------------------------------------------------------------

    def _bot_busy(self) -> bool:
        stream = self.leg.stream
        return self.speaking > 0 or self.gathering or (stream is not None and stream.bot_playing)

    def _listening(self) -> bool:
        stream = self.leg.stream
        return self.transcribing or (stream is not None and stream.sends_inbound)

    def _cancel_waiting_reply(self) -> None:
        if self._reply is not None and self._waiting:
            self._reply.cancel()
            self._reply = None

    def maybe_reply(self) -> None:
        leg = self.leg
        if leg.is_ended or leg.callee.hung_up or not self.wants_to_speak:
            return
        if not self._listening() or self._bot_busy():
            return
        if self._reply is not None and not self._reply.done():
            return
        self._waiting = True
        self._reply = leg.spawn(self._say_next_line())

    async def _say_next_line(self) -> None:
        leg = self.leg
        await leg.sleep(leg.callee.script.reply_delay_ms / 1000)
        self._waiting = False
        line = leg.callee.next_line()
        self.wants_to_speak = False
        if line is None:
            return
        stream = leg.stream if leg.stream is not None and leg.stream.sends_inbound else None
        if stream is None:
            await self._transcribe(line, speech_seconds(line), None)
            return
        audio = await asyncio.to_thread(speech_audio, line)
        speaking = leg.spawn(stream.speak(audio))
        await self._transcribe(line, len(audio) / 8000, speaking)

    async def _transcribe(
        self, line: str, seconds: float, speaking: asyncio.Task[None] | None
    ) -> None:
        """call.transcription for the callee's line: an interim one half way if asked for."""
        if self.interim and self.transcribing:
            await self.leg.sleep(seconds / 2)
            seconds /= 2
            if self.transcribing:
                self.post_transcript(line.split(" ")[0], False, "inbound")
        if speaking is not None:
            await speaking
        else:
            await self.leg.sleep(seconds)
        if self.transcribing and self.tracks != "outbound":
            self.post_transcript(line, True, "inbound")
