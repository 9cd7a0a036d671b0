"""`voice_call.Client` (async) and `voice_call.SyncClient`: the RPC API for agent frameworks.

    import voice_call

    async with voice_call.Client() as calls:           # finds the running `voicecall serve`
        call_id = await calls.initiate("+15555550123", "Hi, it's the clinic.", mode="conversation")
        reply = await calls.continue_call(call_id, "Does Tuesday at three work?")
        turn = await calls.continue_start(call_id, "And Wednesday?")  # no request held open
        reply = await calls.continue_result(turn, wait=20)  # None while the caller still talks
        await calls.end(call_id)

    with voice_call.SyncClient() as calls:             # the same, for plain synchronous code
        record = calls.status(call_id)                 # a CallRecord (transcript, turn latency)

Without arguments the client reads the config and state folder the CLI uses (the server's URL
from `server.json`, the bearer token from `rpc-token`); pass `url` and `token` to reach a server
elsewhere. Errors are the service's own: InvalidInput, NotFound, Conflict, Unavailable
(ServerUnavailable when nothing answers), TimedOut — the same the CLI and RPC report.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from voice_call.client.rpc import DEFAULT_TIMEOUT_S, RpcClient, error_from_reply
from voice_call.errors import InvalidInput, Unavailable
from voice_call.models import CallRecord, Mode

ModeName = Literal["notify", "conversation"] | Mode
MAX_RESULT_WAIT_S = 60.0  # the server's bound on one continue.result wait
T = TypeVar("T")


class Client:
    """Async client over JSON-RPC. Each method is one request; no connection is held open."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        config_path: str | Path | None = None,
        home: str | Path | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        if url is not None and token is not None:
            self.rpc = RpcClient(url, token, timeout)
            return
        from voice_call.config import load_config, state_home

        config = load_config(config_path)
        base = Path(home).expanduser() if home is not None else state_home()
        rpc = RpcClient.from_home(config, base, timeout)
        self.rpc = RpcClient(url or rpc.url, token or rpc.token, timeout)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def initiate(
        self,
        to: str | None,
        message: str,
        *,
        mode: ModeName | None = None,
        session_key: str | None = None,
        dtmf_sequence: str | None = None,
    ) -> str:
        """Place a call; returns its call id. `to` None uses the server's toNumber;
        `session_key` names the memory session the call's conversation belongs to;
        `dtmf_sequence` is pressed once the callee answers (conversation calls)."""
        params: dict[str, Any] = {"message": message}
        if to is not None:
            params["to"] = to
        if session_key is not None:
            params["sessionKey"] = session_key
        if dtmf_sequence is not None:
            params["dtmfSequence"] = dtmf_sequence
        if mode is not None:
            if mode not in ("notify", "conversation"):
                raise InvalidInput(f"mode must be notify or conversation, got {mode!r}")
            params["mode"] = Mode(mode).value
        result = await self.rpc.call("voicecall.initiate", params)
        return str(result["callId"])

    async def continue_call(self, call_id: str, message: str) -> str:
        """Say `message`, then wait for and return what the person says back."""
        result = await self.rpc.call("voicecall.continue", {"callId": call_id, "message": message})
        return str(result.get("transcript", ""))

    async def continue_start(self, call_id: str, message: str) -> str:
        """Say `message` and start listening; returns the turn id for `continue_result`."""
        params = {"callId": call_id, "message": message}
        result = await self.rpc.call("voicecall.continue.start", params)
        return str(result["turnId"])

    async def continue_result(self, turn_id: str, *, wait: float = 0.0) -> str | None:
        """The caller's reply to a `continue_start` turn, or None while it is still pending.

        Waits up to `wait` seconds (at most 60) for it; raises the turn's error (TimedOut,
        Conflict when the call ended, ...) as `continue_call` would.
        """
        if not 0 <= wait <= MAX_RESULT_WAIT_S:
            raise InvalidInput(f"wait must be between 0 and {MAX_RESULT_WAIT_S:.0f} s, got {wait}")
        params = {"turnId": turn_id, "timeoutMs": round(wait * 1000)}
        result = await self.rpc.call("voicecall.continue.result", params)
        if not result.get("done"):
            return None
        if result.get("status") == "failed":
            raise error_from_reply(
                {"message": result.get("error"), "data": {"code": result.get("errorCode")}}
            )
        return str(result.get("transcript", ""))

    async def speak(self, call_id: str, message: str) -> None:
        await self.rpc.call("voicecall.speak", {"callId": call_id, "message": message})

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        await self.rpc.call("voicecall.dtmf", {"callId": call_id, "digits": digits})

    async def end(self, call_id: str) -> None:
        await self.rpc.call("voicecall.end", {"callId": call_id})

    async def status(self, call_id: str) -> CallRecord | None:
        """The call's full record (transcript, per-turn latency, metadata), or None if unknown."""
        result = await self.rpc.call("voicecall.status", {"callId": call_id, "full": True})
        if not result.get("found"):
            return None
        return _record(result.get("call"))

    async def active(self) -> list[CallRecord]:
        """Every call that has not ended yet, full records."""
        result = await self.rpc.call("voicecall.status", {"full": True})
        calls = result.get("calls")
        if not isinstance(calls, list):
            raise Unavailable(f"the server sent a malformed status: {result!r}")
        return [_record(call) for call in calls]

    async def events(
        self, *, since: int | None = None, last: int | None = None, call_id: str | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Logged events as they happen (the `voicecall tail` stream)."""
        async for event in self.rpc.events(since=since, last=last, call_id=call_id):
            yield event


def _record(data: Any) -> CallRecord:
    if not isinstance(data, dict):
        raise Unavailable(f"the server sent a malformed call record: {data!r}")
    return CallRecord.model_validate(data)


class SyncClient:
    """The same methods, blocking. Not for use inside a running event loop (use Client there)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        config_path: str | Path | None = None,
        home: str | Path | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.client = Client(url, token, config_path=config_path, home=home, timeout=timeout)
        self._runner: asyncio.Runner | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise RuntimeError(
                "SyncClient cannot run inside an event loop — use voice_call.Client there"
            )
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(coro)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def initiate(
        self,
        to: str | None,
        message: str,
        *,
        mode: ModeName | None = None,
        session_key: str | None = None,
        dtmf_sequence: str | None = None,
    ) -> str:
        return self._run(
            self.client.initiate(
                to, message, mode=mode, session_key=session_key, dtmf_sequence=dtmf_sequence
            )
        )

    def continue_call(self, call_id: str, message: str) -> str:
        return self._run(self.client.continue_call(call_id, message))

    def continue_start(self, call_id: str, message: str) -> str:
        return self._run(self.client.continue_start(call_id, message))

    def continue_result(self, turn_id: str, *, wait: float = 0.0) -> str | None:
        return self._run(self.client.continue_result(turn_id, wait=wait))

    def speak(self, call_id: str, message: str) -> None:
        self._run(self.client.speak(call_id, message))

    def send_dtmf(self, call_id: str, digits: str) -> None:
        self._run(self.client.send_dtmf(call_id, digits))

    def end(self, call_id: str) -> None:
        self._run(self.client.end(call_id))

    def status(self, call_id: str) -> CallRecord | None:
        return self._run(self.client.status(call_id))

    def active(self) -> list[CallRecord]:
        return self._run(self.client.active())
