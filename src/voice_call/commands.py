"""The command layer: one function per action, shared by RPC, the agent tool, the CLI and MCP.

Each takes raw params (a JSON object from outside), validates them, calls the manager and
returns a JSON-ready result in the plugin's shapes (README "JSON-RPC"). Errors are
`VoiceCallError`s with a stable code, so every face reports them the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
)

from voice_call.errors import InvalidInput, NotFound, Unavailable
from voice_call.languages import normalise_tag
from voice_call.manager.continues import ContinueTurn, ContinueTurns
from voice_call.manager.records import require_live
from voice_call.models import CallRecord, Mode


class Manager(Protocol):
    async def initiate(
        self,
        *,
        to: str | None,
        message: str | None,
        mode: Mode | None,
        session_key: str | None = None,
        dtmf_sequence: str | None = None,
        amd_choice: str | bool | None = None,
        record_call: bool | None = None,
        language: str | None = None,
    ) -> CallRecord: ...

    async def continue_call(self, call_id: str, message: str) -> str: ...

    async def speak(self, call_id: str, message: str) -> None: ...

    async def send_dtmf(self, call_id: str, digits: str) -> None: ...

    async def end(self, call_id: str) -> None: ...

    async def transfer(
        self, call_id: str, to: str, mode: str = "cold", say: str | None = None
    ) -> CallRecord: ...

    async def get(self, call_id: str) -> CallRecord | None: ...

    async def active(self) -> list[CallRecord]: ...


class _Params(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", str_strip_whitespace=True)


P = TypeVar("P", bound=_Params)
# The longest `continue.result` waits for a turn before it answers "still pending".
MAX_RESULT_WAIT_MS = 60_000
# How long a client should keep polling a turn (the plugin's figure: the transcript timeout,
# the TTS timeout and 30 s of slack).
POLL_SLACK_MS = 8_000 + 30_000


class InitiateParams(_Params):
    message: str | None = Field(default=None, max_length=4000)
    to: str | None = Field(default=None, max_length=32)
    mode: Mode | None = None
    # the call's memory session: calls with the same key share history (over sessionScope)
    session_key: str | None = Field(default=None, alias="sessionKey", min_length=1, max_length=200)
    # keys pressed once the callee answers (a conference PIN); the manager checks each key
    dtmf_sequence: str | None = Field(
        default=None, alias="dtmfSequence", min_length=1, max_length=64
    )
    # record this call (true) or not (false), over `recording.enabled`
    record: StrictBool | None = None
    # answering-machine detection for this call, over `outbound.amd` (false: none)
    amd: Literal["detect", "voicemail-drop", False] | None = None
    # the language this call is held in (BCP-47, e.g. "zh-TW"), over numbers/carrier/top level
    language: str | None = Field(default=None, min_length=2, max_length=35)

    @field_validator("language")
    @classmethod
    def _known_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        tag = normalise_tag(value)
        if tag is None:
            raise ValueError(
                f"{value!r} is not a language tag: pass a BCP-47 tag like en-US or zh-TW"
            )
        return tag


class CallParams(_Params):
    call_id: str = Field(alias="callId", min_length=1, max_length=128)


class MessageParams(CallParams):
    message: str = Field(min_length=1, max_length=4000)


class DtmfParams(CallParams):
    digits: str = Field(min_length=1, max_length=64)


class TransferParams(CallParams):
    # E.164 or a SIP URI; the manager checks its shape and the outbound deny-list
    to: str = Field(min_length=1, max_length=256)
    mode: Literal["cold", "warm"] = "cold"
    say: str | None = Field(default=None, min_length=1, max_length=1000)


class TurnParams(_Params):
    """A `continue.start` turn: by `turnId` (or the plugin's name for it, `operationId`)."""

    turn_id: str | None = Field(default=None, alias="turnId", min_length=1, max_length=64)
    operation_id: str | None = Field(default=None, alias="operationId", min_length=1, max_length=64)
    call_id: str | None = Field(default=None, alias="callId", min_length=1, max_length=128)
    timeout_ms: StrictInt = Field(default=0, alias="timeoutMs", ge=0, le=MAX_RESULT_WAIT_MS)


class StatusParams(_Params):
    call_id: str | None = Field(default=None, alias="callId", min_length=1, max_length=128)
    full: bool = False  # include transcript, per-turn latency and metadata


def _parse(model: type[P], params: Any) -> P:
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidInput("params must be an object")
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "params"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


async def initiate(manager: Manager, params: Any) -> dict[str, Any]:
    p = _parse(InitiateParams, params)
    record = await manager.initiate(
        to=p.to,
        message=p.message,
        mode=p.mode,
        session_key=p.session_key,
        dtmf_sequence=p.dtmf_sequence,
        amd_choice=p.amd,
        record_call=p.record,
        language=p.language,
    )
    return {"callId": record.call_id, "initiated": True}


async def continue_call(manager: Manager, params: Any) -> dict[str, Any]:
    p = _parse(MessageParams, params)
    transcript = await manager.continue_call(p.call_id, p.message)
    return {"success": True, "transcript": transcript}


async def continue_start(
    manager: Manager, turns: ContinueTurns, params: Any, transcript_timeout_ms: int
) -> dict[str, Any]:
    """Begin a continue turn and answer at once with its handle (no request is held open)."""
    p = _parse(MessageParams, params)
    record = await manager.get(p.call_id)
    if record is None:
        raise NotFound(f"no call with id {p.call_id!r}")
    require_live(record)
    turn = turns.start(p.call_id, p.message)
    return {
        "callId": turn.call_id,
        "turnId": turn.turn_id,
        "operationId": turn.turn_id,
        "status": "pending",
        "pollTimeoutMs": transcript_timeout_ms + POLL_SLACK_MS,
    }


async def continue_result(
    turns: ContinueTurns, params: Any, transcript_timeout_ms: int
) -> dict[str, Any]:
    """A continue turn's outcome; waits up to `timeoutMs` while it is still pending."""
    p = _parse(TurnParams, params)
    turn_id = p.turn_id or p.operation_id
    if turn_id is None:
        raise InvalidInput("turnId is required: the turnId voicecall.continue.start returned")
    if p.turn_id and p.operation_id and p.turn_id != p.operation_id:
        raise InvalidInput("turnId and operationId name different turns: pass one of them")
    turn = await turns.result(turn_id, p.call_id, p.timeout_ms / 1000)
    return turn_view(turn, transcript_timeout_ms + POLL_SLACK_MS)


def turn_view(turn: ContinueTurn, poll_timeout_ms: int) -> dict[str, Any]:
    head: dict[str, Any] = {"callId": turn.call_id, "turnId": turn.turn_id}
    if not turn.done:
        return {**head, "done": False, "status": "pending", "pollTimeoutMs": poll_timeout_ms}
    if turn.error is not None:
        error = {"error": turn.error.message, "errorCode": turn.error.code}
        return {**head, "done": True, "status": "failed", **error}
    return {**head, "done": True, "status": "completed", "transcript": turn.transcript or ""}


async def speak(manager: Manager, params: Any) -> dict[str, Any]:
    p = _parse(MessageParams, params)
    await manager.speak(p.call_id, p.message)
    return {"success": True}


async def dtmf(manager: Manager, params: Any) -> dict[str, Any]:
    p = _parse(DtmfParams, params)
    await manager.send_dtmf(p.call_id, p.digits)
    return {"success": True}


async def transfer(manager: Manager, params: Any) -> dict[str, Any]:
    """Hand the caller to a person; the outcome follows as `call.transfer` events."""
    p = _parse(TransferParams, params)
    await manager.transfer(p.call_id, p.to, p.mode, p.say)
    return {"success": True, "callId": p.call_id, "to": p.to, "mode": p.mode, "status": "dialing"}


async def end(manager: Manager, params: Any) -> dict[str, Any]:
    p = _parse(CallParams, params)
    await manager.end(p.call_id)
    return {"success": True}


def _view(record: CallRecord, full: bool) -> dict[str, Any]:
    return record.wire() if full else record.summary()


async def status(manager: Manager, params: Any) -> dict[str, Any]:
    p = _parse(StatusParams, params)
    if p.call_id is None:
        return {"found": True, "calls": [_view(r, p.full) for r in await manager.active()]}
    record = await manager.get(p.call_id)
    if record is None:
        return {"found": False}
    return {"found": True, "call": _view(record, p.full)}


Command = Callable[[Manager, Any], Awaitable[dict[str, Any]]]

METHODS: dict[str, Command] = {
    "voicecall.initiate": initiate,
    "voicecall.start": initiate,  # the plugin's alias (its CLI `start`, Meet dial-in joins)
    "voicecall.continue": continue_call,
    "voicecall.speak": speak,
    "voicecall.dtmf": dtmf,
    "voicecall.transfer": transfer,
    "voicecall.end": end,
    "voicecall.status": status,
}


# Methods that need the server's ContinueTurns (they outlive one request).
TURN_METHODS = ("voicecall.continue.start", "voicecall.continue.result")


async def dispatch(
    manager: Manager,
    method: str,
    params: Any,
    turns: ContinueTurns | None = None,
    transcript_timeout_ms: int = 0,
) -> dict[str, Any]:
    """Run one command by its RPC name. Raises NotFound for an unknown method."""
    if method in TURN_METHODS:
        if turns is None:
            raise Unavailable(f"{method} needs a running server: call it over JSON-RPC")
        if method == "voicecall.continue.start":
            return await continue_start(manager, turns, params, transcript_timeout_ms)
        return await continue_result(turns, params, transcript_timeout_ms)
    command = METHODS.get(method)
    if command is None:
        known = ", ".join((*METHODS, *TURN_METHODS))
        raise NotFound(f"unknown method {method!r}; expected one of {known}")
    return await command(manager, params)
