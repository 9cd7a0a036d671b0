"""The command layer: one function per action, shared by RPC, the agent tool, the CLI and MCP.

Each takes raw params (a JSON object from outside), validates them, calls the manager and
returns a JSON-ready result in the plugin's shapes (README "JSON-RPC"). Errors are
`VoiceCallError`s with a stable code, so every face reports them the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voice_call.errors import InvalidInput, NotFound
from voice_call.models import CallRecord, Mode


class Manager(Protocol):
    async def initiate(
        self, *, to: str | None, message: str | None, mode: Mode | None
    ) -> CallRecord: ...

    async def continue_call(self, call_id: str, message: str) -> str: ...

    async def speak(self, call_id: str, message: str) -> None: ...

    async def send_dtmf(self, call_id: str, digits: str) -> None: ...

    async def end(self, call_id: str) -> None: ...

    async def get(self, call_id: str) -> CallRecord | None: ...

    async def active(self) -> list[CallRecord]: ...


class _Params(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", str_strip_whitespace=True)


P = TypeVar("P", bound=_Params)


class InitiateParams(_Params):
    message: str | None = Field(default=None, max_length=4000)
    to: str | None = Field(default=None, max_length=32)
    mode: Mode | None = None


class CallParams(_Params):
    call_id: str = Field(alias="callId", min_length=1, max_length=128)


class MessageParams(CallParams):
    message: str = Field(min_length=1, max_length=4000)


class DtmfParams(CallParams):
    digits: str = Field(min_length=1, max_length=64)


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
    record = await manager.initiate(to=p.to, message=p.message, mode=p.mode)
    return {"callId": record.call_id, "initiated": True}


async def continue_call(manager: Manager, params: Any) -> dict[str, Any]:
    p = _parse(MessageParams, params)
    transcript = await manager.continue_call(p.call_id, p.message)
    return {"success": True, "transcript": transcript}


async def speak(manager: Manager, params: Any) -> dict[str, Any]:
    p = _parse(MessageParams, params)
    await manager.speak(p.call_id, p.message)
    return {"success": True}


async def dtmf(manager: Manager, params: Any) -> dict[str, Any]:
    p = _parse(DtmfParams, params)
    await manager.send_dtmf(p.call_id, p.digits)
    return {"success": True}


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
    "voicecall.continue": continue_call,
    "voicecall.speak": speak,
    "voicecall.dtmf": dtmf,
    "voicecall.end": end,
    "voicecall.status": status,
}


async def dispatch(manager: Manager, method: str, params: Any) -> dict[str, Any]:
    """Run one command by its RPC name. Raises NotFound for an unknown method."""
    command = METHODS.get(method)
    if command is None:
        raise NotFound(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    return await command(manager, params)
