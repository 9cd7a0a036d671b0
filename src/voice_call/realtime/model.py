"""The protocol between the realtime bridge and a speech-to-speech model service.

A provider (`realtime/providers/openai.py`, `google.py`) owns one WebSocket session per call and
speaks its service's wire protocol; the bridge sees only this interface, so a third service is
one file. Audio crosses it as G.711 µ-law at 8 kHz both ways — what the carrier sends and plays —
and each provider converts only where its service needs another format (OpenAI takes and gives
`audio/pcmu`: no conversion; Gemini Live takes 16 kHz PCM and gives 24 kHz PCM: soxr).

`connect()` may run while the phone rings (pre-warm); `send_audio` never blocks and drops audio
while the socket is down; everything the model does comes back through the listener, which the
bridge attaches once the carrier's stream starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Speaker = Literal["user", "bot"]


class RealtimeError(RuntimeError):
    """The model service cannot be reached, refused the key, or rejected the session."""


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call: a name, what it is for, JSON Schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True)
class SessionSetup:
    """What a session is opened with. `history` carries the conversation so far when a dropped
    session is reopened (oldest first), so the model's memory survives the reconnect."""

    instructions: str
    tools: tuple[ToolSpec, ...] = ()
    voice: str | None = None
    language: str | None = None  # BCP-47, e.g. "en-US"; None: the model detects
    history: tuple[tuple[Speaker, str], ...] = ()


class ModelListener(Protocol):
    """What the bridge hears from the model. Called on the event loop, never concurrently."""

    def on_audio(self, ulaw: bytes) -> None:
        """More of the current response's speech (µ-law 8 kHz, any length)."""

    def on_speech_started(self) -> None:
        """The model heard the caller start talking (its VAD, or Gemini's `interrupted`): the
        barge-in trigger. Audio already handed over for the current response is stale now."""

    def on_input_transcript(self, text: str, final: bool) -> None:
        """The caller's words: the utterance so far (`final` False), then all of it."""

    def on_output_transcript(self, delta: str) -> None:
        """The next words of what the model is saying in the current response."""

    def on_response_done(self) -> None:
        """The current response has no more audio coming (the bridge plays out what it holds)."""

    def on_tool_call(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        """The model calls a function; answer with `RealtimeModel.tool_result(call_id, ...)`.
        Arguments that are not a JSON object arrive as `{"_raw": "<text>"}`."""

    def on_error(self, message: str, fatal: bool) -> None:
        """`fatal`: the session is gone (socket dropped, server error); else it goes on."""

    def on_closed(self, reason: str) -> None:
        """The service ended the session on its own (not by our `close`)."""


class RealtimeModel(Protocol):
    name: str  # the provider id: "openai", "google"
    listener: ModelListener | None
    # monotonic time of the caller's last speech frame by the model's VAD (speech stopped), or
    # None until an utterance has ended: the start of a turn's voice-to-voice latency
    speech_ended_at: float | None

    @property
    def connected(self) -> bool: ...

    async def connect(self, setup: SessionSetup) -> None:
        """Open the socket and configure the session (idempotent); raises RealtimeError."""

    def send_audio(self, ulaw: bytes) -> None:
        """Forward the caller's audio (µ-law 8 kHz, as received); dropped while disconnected."""

    def interrupted(self, heard_ms: int) -> None:
        """The caller cut the current response after hearing `heard_ms` of its audio: stop it
        and make the model's memory hold only what was heard (OpenAI: truncate the item)."""

    def say(self, text: str) -> None:
        """Make the model's next response say `text` verbatim (commands: speak, continue)."""

    def respond(self) -> None:
        """Ask the model to respond now (e.g. to open the call when it owns the greeting)."""

    def tool_result(
        self, call_id: str, name: str, output: Any, *, error: str | None = None
    ) -> None:
        """Answer a tool call (`error` set: the call failed, told to the model so it can
        explain) and let the model go on speaking."""

    async def close(self) -> None: ...
