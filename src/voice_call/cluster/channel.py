"""Request/reply between instances over Redis pub/sub.

Each instance listens on `P:ch:{its id}` with one dedicated connection. A request is
`{"k": "req", "rid", "from", "op", "p"}`; its reply goes to the requester's channel as
`{"k": "rep", "rid", "ok": true, "r"}` or `{"k": "rep", "rid", "ok": false, "e": {"code",
"message"}}`. Pub/sub delivers only to who listens now: PUBLISH answering 0 means the target is
gone (Unreachable at once, no waiting for a timeout); a message lost in between is a timeout.

Each request runs in its own task: a handler may wait minutes (a `continue` waits for the
caller's words) and must never hold up the requests and replies behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from voice_call.errors import BY_CODE, NotFound, TimedOut, Unavailable, VoiceCallError

log = logging.getLogger("voice_call.cluster.channel")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

# the reader's wait for one message: bounded, so a stop or a dead connection is noticed
_READ_WAIT_S = 1.0
_RECONNECT_MIN_S = 0.05
_RECONNECT_MAX_S = 1.0
_SUBSCRIBE_WAIT_S = 5.0
_STOP_WAIT_S = 2.0
# While waiting for a reply, how often to check that the target still lives: an instance that
# dies holding a request (kill -9) must not keep its requester waiting for the whole timeout.
_LIVENESS_POLL_S = 1.0


class Unreachable(Unavailable):
    """Nobody listens on the target instance's channel (PUBLISH returned 0): it is gone."""


class Channel:
    """Request/reply between instances over Redis pub/sub (JSON messages)."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        instance_id: str,
        alive: Callable[[str], Awaitable[bool]],
    ) -> None:
        self._redis = redis
        self._alive = alive  # Instance.alive: is that instance's liveness key still there
        self._prefix = prefix
        self.liveness_poll_s = _LIVENESS_POLL_S
        self.id = instance_id
        self._handlers: dict[str, Handler] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._serving: set[asyncio.Task[None]] = set()
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None

    def _channel(self, instance_id: str) -> str:
        return f"{self._prefix}:ch:{instance_id}"

    def handle(self, op: str, handler: Handler) -> None:
        """Serve `op` with `handler(payload) -> JSON value` (before or after start)."""
        self._handlers[op] = handler

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Subscribe (confirmed by the server before this returns, so a request sent right
        after reaches us) and start reading. Idempotent."""
        if self._reader is not None:
            return
        self._pubsub = await self._subscribe()
        self._reader = asyncio.create_task(self._read(), name=f"cluster-channel-{self.id}")

    async def stop(self) -> None:
        """Stop reading; requests waiting for a reply fail with Unavailable, handlers still
        running are cancelled (their requesters get Unavailable). Idempotent."""
        reader, self._reader = self._reader, None
        if reader is None:
            return
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(Unavailable(f"instance {self.id} is stopping"))
        serving = list(self._serving)
        for task in serving:
            task.cancel()
        if serving:
            await asyncio.wait(serving, timeout=_STOP_WAIT_S)
        await self._close_pubsub()

    # ------------------------------------------------------------------ requests

    async def request(
        self, target: str, op: str, payload: dict[str, Any], *, timeout_s: float = 10.0
    ) -> Any:
        """Run `op` on instance `target` and return its result.

        Raises Unreachable when nobody listens on the target's channel, TimedOut when no reply
        comes within `timeout_s`, the remote VoiceCallError as the same class, Unavailable for
        anything else that failed there."""
        try:
            async with asyncio.timeout(timeout_s):
                if target == self.id:
                    return await self._run(op, payload)
                return await self._remote(target, op, payload)
        except TimeoutError:
            raise TimedOut(
                f"instance {target} did not answer {op!r} within {timeout_s:g} s"
            ) from None

    async def _remote(self, target: str, op: str, payload: dict[str, Any]) -> Any:
        if self._reader is None:
            raise Unavailable(f"instance {self.id} cannot reach others: its channel is stopped")
        rid = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        message = {"k": "req", "rid": rid, "from": self.id, "op": op, "p": payload}
        try:
            try:
                receivers = await self._redis.publish(self._channel(target), json.dumps(message))
            except (RedisError, OSError) as exc:
                raise Unavailable(f"cannot send {op!r} to instance {target}: {exc}") from None
            if receivers == 0:
                raise Unreachable(
                    f"instance {target} is unreachable: nobody listens on its channel"
                )
            return await self._reply(future, target, op)
        finally:
            self._pending.pop(rid, None)

    async def _reply(self, future: asyncio.Future[Any], target: str, op: str) -> Any:
        """The reply, or Unreachable as soon as the target's liveness key is gone."""
        while True:
            done, _ = await asyncio.wait({future}, timeout=self.liveness_poll_s)
            if done:
                return future.result()
            try:
                alive = await self._alive(target)
            except (RedisError, OSError):
                continue  # cannot tell: keep waiting for the reply (the timeout still holds)
            if not alive:
                raise Unreachable(f"instance {target} died before answering {op!r}")

    async def _run(self, op: str, payload: dict[str, Any]) -> Any:
        """The handler's result, or its failure as a VoiceCallError (the same wherever the
        handler runs)."""
        handler = self._handlers.get(op)
        if handler is None:
            raise NotFound(f"instance {self.id} does not serve {op!r}")
        try:
            return await handler(payload)
        except VoiceCallError:
            raise
        except Exception as exc:
            log.exception("instance %s: handler for %r failed", self.id, op)
            raise Unavailable(f"instance {self.id} failed: {exc}") from exc

    # ------------------------------------------------------------------ reading

    async def _subscribe(self) -> PubSub:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._channel(self.id))
            async with asyncio.timeout(_SUBSCRIBE_WAIT_S):
                while True:
                    message = await pubsub.get_message(timeout=_READ_WAIT_S)
                    if message is not None and message["type"] == "subscribe":
                        return pubsub
        except BaseException:
            await pubsub.aclose()
            raise

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    async def _read(self) -> None:
        """Dispatch incoming messages until cancelled; a dropped connection is re-made and
        re-subscribed (messages sent meanwhile are lost: their requesters time out)."""
        while True:
            try:
                assert self._pubsub is not None
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=_READ_WAIT_S
                )
            except (RedisError, OSError) as exc:
                log.warning("instance %s: channel connection lost, reconnecting: %s", self.id, exc)
                await self._reconnect()
                continue
            if message is not None and message["type"] == "message":
                self._dispatch(message["data"])

    async def _reconnect(self) -> None:
        await self._close_pubsub()
        wait = _RECONNECT_MIN_S
        while True:
            try:
                self._pubsub = await self._subscribe()
            except (RedisError, OSError, TimeoutError) as exc:
                log.debug("instance %s: resubscribe failed: %s", self.id, exc)
                await asyncio.sleep(wait)
                wait = min(wait * 2, _RECONNECT_MAX_S)
                continue
            log.warning("instance %s: channel reconnected", self.id)
            return

    def _dispatch(self, data: str) -> None:
        try:
            message = json.loads(data)
            kind = message["k"]
        except (ValueError, TypeError, KeyError):
            log.warning("instance %s: ignored a malformed channel message", self.id)
            return
        if kind == "rep":
            self._settle(message)
        elif kind == "req":
            task = asyncio.create_task(self._serve(message))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)

    def _settle(self, reply: dict[str, Any]) -> None:
        future = self._pending.get(str(reply.get("rid")))
        if future is None or future.done():
            return  # timed out or stopped meanwhile
        if reply.get("ok"):
            future.set_result(reply.get("r"))
            return
        error = reply.get("e") or {}
        cls = BY_CODE.get(str(error.get("code")), Unavailable)
        future.set_exception(cls(str(error.get("message", "the other instance failed"))))

    async def _serve(self, request: dict[str, Any]) -> None:
        rid, sender, op = request.get("rid"), request.get("from"), request.get("op")
        if not isinstance(sender, str) or not isinstance(op, str):
            log.warning("instance %s: ignored a request without sender or op", self.id)
            return
        payload = request.get("p")
        try:
            result = await self._run(op, payload if isinstance(payload, dict) else {})
            data = json.dumps({"k": "rep", "rid": rid, "ok": True, "r": result})
        except VoiceCallError as exc:
            data = _error_reply(rid, exc)
        except asyncio.CancelledError:
            await self._send(
                sender, _error_reply(rid, Unavailable(f"instance {self.id} is stopping"))
            )
            raise
        except (TypeError, ValueError) as exc:  # a result that is not JSON
            log.exception("instance %s: %r returned what JSON cannot carry", self.id, op)
            data = _error_reply(rid, Unavailable(f"instance {self.id} failed: {exc}"))
        await self._send(sender, data)

    async def _send(self, target: str, data: str) -> None:
        try:
            receivers = await self._redis.publish(self._channel(target), data)
        except (RedisError, OSError) as exc:
            log.warning("instance %s: could not reply to %s: %s", self.id, target, exc)
            return
        if receivers == 0:
            log.warning("instance %s: nobody listens for the reply to %s", self.id, target)


def _error_reply(rid: Any, exc: VoiceCallError) -> str:
    error = {"code": exc.code, "message": exc.message}
    return json.dumps({"k": "rep", "rid": rid, "ok": False, "e": error})
