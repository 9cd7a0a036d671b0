"""The core model: call states, end reasons, events (the carrier's and the manager's own log
entries), transcript entries and the call record.

Imports nothing of ours. Field names are snake_case in Python and camelCase on the wire
(JSON-RPC, webhooks, the store), matching the seed plugin (`callId`, `providerCallId`, ...).
"""

from __future__ import annotations

import re
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

# ASCII digits only (`\d` and str.isdigit() also take ٨ and other scripts' digits) and the
# whole string (`$` would let a trailing newline through `match`).
E164 = re.compile(r"\A\+[1-9][0-9]{1,14}\Z")
DTMF_DIGITS = re.compile(r"^[0-9*#wWpP,]{1,64}$")


class CallState(StrEnum):
    INITIATED = "initiated"
    RINGING = "ringing"
    ANSWERED = "answered"
    ACTIVE = "active"
    SPEAKING = "speaking"
    LISTENING = "listening"
    # terminal
    COMPLETED = "completed"
    HANGUP_USER = "hangup-user"
    HANGUP_BOT = "hangup-bot"
    TIMEOUT = "timeout"
    ERROR = "error"
    FAILED = "failed"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    VOICEMAIL = "voicemail"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def live(self) -> bool:
        """Connected to a person: answered and not yet ended."""
        return self in LIVE_STATES


# The forward order of non-terminal states; speaking and listening share a rank.
_RANK = {
    CallState.INITIATED: 0,
    CallState.RINGING: 1,
    CallState.ANSWERED: 2,
    CallState.ACTIVE: 3,
    CallState.SPEAKING: 4,
    CallState.LISTENING: 4,
}
TERMINAL_STATES = frozenset(s for s in CallState if s not in _RANK)
LIVE_STATES = frozenset(
    {CallState.ANSWERED, CallState.ACTIVE, CallState.SPEAKING, CallState.LISTENING}
)
EndReason = CallState  # an end reason is always one of the terminal states


def can_transition(current: CallState, target: CallState) -> bool:
    """Forward-only: any non-terminal may end; terminal is final; speaking ⇄ listening cycle."""
    if current.terminal or current == target:
        return False
    if target.terminal:
        return True
    return _RANK[target] >= _RANK[current]


class Mode(StrEnum):
    NOTIFY = "notify"
    CONVERSATION = "conversation"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class AnsweredBy(StrEnum):
    """Answering-machine detection's verdict, the same words on every carrier."""

    HUMAN = "human"
    MACHINE = "machine"
    FAX = "fax"
    UNKNOWN = "unknown"


class Speaker(StrEnum):
    BOT = "bot"
    USER = "user"


class EventType(StrEnum):
    """Normalised events a provider reports; the manager never sees carrier shapes."""

    INITIATED = "call.initiated"
    RINGING = "call.ringing"
    ANSWERED = "call.answered"
    ACTIVE = "call.active"
    SPEAKING = "call.speaking"
    SPEECH = "call.speech"
    SILENCE = "call.silence"
    PLAYBACK_ENDED = "call.playback-ended"  # the carrier finished playing what we said
    # a realtime model's own answer: `text` as the caller heard it, `is_final` False when cut
    REPLIED = "call.replied"
    DTMF = "call.dtmf"
    STREAM_STARTED = "call.stream-started"  # a media stream was admitted (spends its token)
    # answering-machine detection's verdict: `answered_by` human | machine | fax | unknown
    AMD = "call.amd"
    MACHINE_GREETING_ENDED = "call.machine-greeting-ended"  # the beep / end of the greeting
    # a transfer's progress: `transfer_target`, `transfer_status` (TransferStatus)
    TRANSFER = "call.transfer"
    # a recording is ready (or failed): `recording_url` / `recording_path`, duration, status
    RECORDING = "call.recording"
    ENDED = "call.ended"
    ERROR = "call.error"


class TransferStatus(StrEnum):
    """How far a transfer got: dialing, then bridged (the caller is with the target) or one of
    the failures that hand the caller back to the bot."""

    DIALING = "dialing"
    ANSWERED = "answered"
    BRIDGED = "bridged"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"

    @property
    def failed(self) -> bool:
        return self in (TransferStatus.BUSY, TransferStatus.NO_ANSWER, TransferStatus.FAILED)


class ManagerEntry(StrEnum):
    """The manager's own event-log entries: what it did or decided, beside the carrier's events.

    A log entry's type is an `EventType` (a carrier event, applied) or one of these. A call the
    manager ends itself is logged as `EventType.ENDED`, as a carrier's end is.
    """

    CREATED = "call.created"  # an outbound call was recorded, before it is dialled
    DIALED = "call.dialed"
    DIAL_FAILED = "call.dial-failed"
    STALE = "call.stale"  # never answered within staleCallReaperSeconds
    RESTORED = "call.restored"  # reconciled with the carrier after a restart
    IGNORED = "call.ignored"  # a carrier event for a call that had ended (data: event, outcome)
    SPEAKING = "bot.speaking"
    SPOKE = "bot.spoke"
    SPEAK_FAILED = "bot.speak-failed"
    LISTENING = "bot.listening"
    GREETED = "bot.greeted"
    DTMF = "bot.dtmf"
    DTMF_FAILED = "bot.dtmf-failed"  # the carrier refused the dtmfSequence sent on answer
    REPLY_FAILED = "bot.reply-failed"  # the responder failed or was too slow: the apology
    GOODBYE = "bot.goodbye"  # the responder asked to hang up after its reply
    HANGUP = "bot.hangup"
    AMD_TIMEOUT = "call.amd-timeout"  # no verdict within timeoutMs: unknown, a person
    VOICEMAIL = "bot.voicemail"  # the voicemail's message: being left, then left
    TURN_COMPLETED = "turn.completed"  # an agent's continue turn, with its figures
    TURN_REPLIED = "turn.replied"  # an auto-reply turn, with its figures
    RECORDING_FAILED = "recording.failed"  # the carrier would not record, or its file failed


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python; both accepted on input."""

    # NaN/inf would be stored as null and break ordering and durations: refuse them at the edge.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", allow_inf_nan=False
    )

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class CallEvent(WireModel):
    """One normalised event. `call_id` or `provider_call_id` identifies the call."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
    )

    type: EventType
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    dedupe_key: str | None = Field(default=None, max_length=512)
    call_id: str | None = Field(default=None, max_length=128)
    provider_call_id: str | None = Field(default=None, max_length=256)
    timestamp: float | None = None
    direction: Direction | None = None
    from_number: str | None = Field(default=None, alias="from", max_length=64)
    to_number: str | None = Field(default=None, alias="to", max_length=64)
    turn_token: str | None = Field(default=None, max_length=128)
    # call.speech / call.speaking
    transcript: str | None = Field(default=None, max_length=8000)
    text: str | None = Field(default=None, max_length=8000)
    is_final: bool = True
    confidence: float | None = Field(default=None, ge=0, le=1)
    # measured on a media stream: caller's last speech frame → final transcript (call.speech);
    # text handed to TTS → first audio byte (call.speaking)
    endpointing_ms: float | None = Field(default=None, ge=0, le=600_000)
    tts_first_byte_ms: float | None = Field(default=None, ge=0, le=600_000)
    # realtime voice (call.speaking, call.replied): caller's last speech frame → first frame out
    voice_to_voice_ms: float | None = Field(default=None, ge=0, le=600_000)
    # call.dtmf
    digits: str | None = Field(default=None, max_length=64)
    # call.amd: who answered (AnsweredBy)
    answered_by: AnsweredBy | None = None
    # call.recording: the carrier's file (url), or ours on disk (path: a download or the
    # stream's local dual-channel WAV, status "local")
    recording_url: str | None = Field(default=None, max_length=2000)
    recording_duration_s: float | None = Field(default=None, ge=0, le=86_400)
    recording_status: str | None = Field(default=None, max_length=64)
    recording_path: str | None = Field(default=None, max_length=4096)
    # call.transfer: who the caller is being handed to, and how far it got
    transfer_target: str | None = Field(default=None, max_length=256)
    transfer_status: TransferStatus | None = None
    # the carrier's id of the target's own leg, where we must act on it (Telnyx warm transfer)
    transfer_leg: str | None = Field(default=None, max_length=256)
    # call.silence
    duration_ms: int | None = Field(default=None, ge=0)
    # call.ended
    reason: EndReason | None = None
    # call.error
    error: str | None = Field(default=None, max_length=2000)
    retryable: bool = False

    @field_validator("reason")
    @classmethod
    def _reason_is_terminal(cls, v: EndReason | None) -> EndReason | None:
        if v is not None and not v.terminal:
            raise ValueError(f"reason must be a terminal state, not {v.value!r}")
        return v

    @property
    def key(self) -> str:
        """The dedupe key: the carrier-derived key when given, else the event id."""
        return self.dedupe_key or self.id


class TranscriptEntry(WireModel):
    at: float
    speaker: Speaker
    text: str
    final: bool = True


class TurnKind(StrEnum):
    CONTINUE = "continue"  # an agent's `continue_call`: speak, then wait for the caller
    REPLY = "reply"  # an auto-response to what the caller said


class TurnLatency(WireModel):
    """Figures for one turn, in milliseconds. Which ones are set depends on the kind (and on
    the path: endpointing and TTS first byte exist only where we run STT/TTS ourselves)."""

    turn: int
    kind: TurnKind = TurnKind.CONTINUE
    at: float | None = None  # wall clock when the turn ended
    total_ms: float  # continue: called → transcript; reply: heard → reply handed over
    # continue
    speak_ms: float | None = None  # prompt handed to the provider → playback accepted
    listen_wait_ms: float | None = None  # listening started → final transcript
    # reply, measured where audio meets the carrier
    endpointing_ms: float | None = None  # caller's last speech frame → STT final
    responder_first_token_ms: float | None = None  # responder asked → first token
    responder_total_ms: float | None = None  # responder asked → reply complete
    tts_first_byte_ms: float | None = None  # text to TTS → first audio byte
    # last caller audio frame in → first reply audio frame out; on native-speech paths:
    # final speech event received → first reply command sent to the provider
    voice_to_voice_ms: float | None = None
    outcome: str | None = None  # reply: spoken, interrupted, apology, silent, ended, failed


class CallRecord(WireModel):
    call_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    provider: str
    provider_call_id: str | None = None
    direction: Direction
    mode: Mode
    from_number: str = Field(alias="from")
    to_number: str = Field(alias="to")
    state: CallState = CallState.INITIATED
    started_at: float
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: EndReason | None = None
    transcript: list[TranscriptEntry] = Field(default_factory=list)
    latency: list[TurnLatency] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # The agent the call belongs to (`agentId`: the number's, else the top level); None on
    # records stored before it existed, which count as the default agent "main".
    agent_id: str | None = None
    # The memory session chosen at initiate (`sessionKey`); None: `sessionScope` decides.
    session_key: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    def summary(self) -> dict[str, Any]:
        """The status shape of the seed tool: no transcript, no metadata."""
        keep = (
            "callId",
            "providerCallId",
            "provider",
            "direction",
            "mode",
            "from",
            "to",
            "state",
            "startedAt",
            "answeredAt",
            "endedAt",
            "endReason",
        )
        data = self.wire()
        summary = {k: data[k] for k in keep if k in data}
        amd = self.metadata.get("amd")
        if isinstance(amd, dict) and "answeredBy" in amd:
            summary["answeredBy"] = amd["answeredBy"]  # answering-machine detection's verdict
        return summary
