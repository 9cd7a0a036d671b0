"""Live media streams in a cluster: a call's stream is held where its WebSocket landed.

The instance that admits a stream records itself as the call's holder (`P:stream:{call}`,
through `ClusterStreams.hold`) and serves the stream's commands to the others over the channel
("media.speak", "media.play", "media.clear", "media.finish", "media.close"). Any other instance
reaches that stream through a `RemoteSession`, a LiveSession (media/registry.py) whose commands
travel to the holder, so the providers' streamed speech works the same wherever a command
arrives.

A socket cannot move between instances: when its holder dies the stream is gone, and the call's
owner ends the call with a recorded reason (`end_if_stream_lost`, which the owner's adoption
sweep runs over its calls, cluster/adoption.py).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from voice_call.cluster.channel import Unreachable
from voice_call.cluster.instance import HEARTBEAT_S
from voice_call.errors import InvalidInput, VoiceCallError
from voice_call.media.playback import (
    PlaybackQueueFull,
    PlaybackResult,
    PlaybackStatus,
    SessionClosed,
)
from voice_call.models import CallState
from voice_call.providers.base import ProviderError

if TYPE_CHECKING:
    from voice_call.cluster import Cluster
    from voice_call.manager.manager import CallManager
    from voice_call.media.registry import LiveSession
    from voice_call.media.tap import MediaTap

log = logging.getLogger("voice_call.cluster.streams")

# A speak's reply comes when the caller has heard it: long replies queued behind others take
# minutes. A holder that dies meanwhile is noticed by its heartbeat (HEARTBEAT_S), not this.
PLAYBACK_TIMEOUT_S = 600.0
COMMAND_TIMEOUT_S = 10.0
FINISH_MARGIN_S = 5.0  # on top of finish_playback's own timeout, for the round trip

Lookup = Callable[[str], "LiveSession | None"]


def stream_lost(holder: str) -> str:
    return f"the instance holding this call's media stream stopped (instance {holder})"


class RemoteSession:
    """A call's live stream held by another instance, driven over the channel.

    `speak`/`play` futures settle with the holder's PlaybackResult. When the holder cannot be
    reached (nothing was sent) they settle FAILED with no audio sent, so streamed speech may
    fall back to the carrier's voice; when it dies while one plays they fail with a
    ProviderError (audio may have gone out). `closed` is best effort: True once the holder says
    the stream is gone or the holder is dead. Listening in is served only where the stream
    is held (`tap` is always None here).
    """

    def __init__(self, cluster: Cluster, call_id: str, holder: str) -> None:
        self._cluster = cluster
        self._call_id = call_id
        self.holder = holder
        self._closed = False
        self._lost = asyncio.Event()  # the holder is dead: requests waiting on it fail
        self._pending = 0
        self._watch: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.tap: MediaTap | None = None  # never set: listen-in is served by the holder alone

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ commands

    def speak(self, text: str, *, interruptible: bool = True) -> asyncio.Future[PlaybackResult]:
        payload = {"callId": self._call_id, "text": text, "interruptible": interruptible}
        return self._playback("media.speak", payload, text)

    def play(self, ulaw: bytes, label: str) -> asyncio.Future[PlaybackResult]:
        payload = {
            "callId": self._call_id,
            "ulaw": base64.b64encode(ulaw).decode("ascii"),
            "label": label,
        }
        return self._playback("media.play", payload, label)

    def clear(self) -> None:
        """Sent and not awaited (as a local clear returns at once); a failure is logged."""
        self._spawn(self._command("media.clear", {"callId": self._call_id}))

    async def finish_playback(self, timeout_s: float | None = None) -> None:
        wait_s = PLAYBACK_TIMEOUT_S if timeout_s is None else timeout_s
        payload = {"callId": self._call_id, "timeoutS": wait_s}
        await self._command("media.finish", payload, wait_s + FINISH_MARGIN_S)

    async def close(self) -> None:
        if not self._closed:
            await self._command("media.close", {"callId": self._call_id})
            self._closed = True

    # ------------------------------------------------------------------ over the channel

    def _playback(
        self, op: str, payload: dict[str, Any], text: str
    ) -> asyncio.Future[PlaybackResult]:
        if self._closed:
            raise SessionClosed("the media stream for this call has ended")
        future: asyncio.Future[PlaybackResult] = asyncio.get_running_loop().create_future()
        self._spawn(self._settle(future, op, payload, text))
        return future

    async def _settle(
        self, future: asyncio.Future[PlaybackResult], op: str, payload: dict[str, Any], text: str
    ) -> None:
        try:
            reply = await self._call(op, payload, PLAYBACK_TIMEOUT_S)
            outcome: PlaybackResult | BaseException = self._outcome(reply, text)
        except Unreachable:  # nobody received it: nothing was played
            self._closed = True
            outcome = _not_played(text, stream_lost(self.holder))
        except (VoiceCallError, _HolderLost) as exc:
            outcome = ProviderError(f"speech on the stream held elsewhere failed: {exc}")
        except Exception as exc:  # the Redis connection itself
            outcome = ProviderError(f"speech on the stream held elsewhere failed: {exc}")
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def _outcome(self, reply: Any, text: str) -> PlaybackResult | BaseException:
        if not isinstance(reply, dict):
            return ProviderError(f"instance {self.holder} answered a playback with {reply!r}")
        if "queueFull" in reply:
            return PlaybackQueueFull(str(reply["queueFull"]))
        if reply.get("closed") or "result" not in reply:
            self._closed = True
            return _not_played(text, "the media stream for this call has ended")
        return result_from_json(reply["result"])

    async def _command(
        self, op: str, payload: dict[str, Any], timeout_s: float = COMMAND_TIMEOUT_S
    ) -> None:
        """Best effort, as the local commands are: a holder that is gone took its stream with
        it (nothing left to command); any other failure is logged."""
        try:
            reply = await self._call(op, payload, timeout_s)
        except (Unreachable, _HolderLost):
            self._closed = True
            return
        except VoiceCallError as exc:
            log.warning(
                "call %s: %s on instance %s failed: %s", self._call_id, op, self.holder, exc
            )
            return
        if isinstance(reply, dict) and reply.get("closed"):
            self._closed = True

    async def _call(self, op: str, payload: dict[str, Any], timeout_s: float) -> Any:
        """The holder's reply to `op`; _HolderLost when it dies before replying."""
        request = asyncio.ensure_future(
            self._cluster.channel.request(self.holder, op, payload, timeout_s=timeout_s)
        )
        lost = asyncio.ensure_future(self._lost.wait())
        self._pending += 1
        if self._watch is None or self._watch.done():
            self._watch = asyncio.ensure_future(self._watch_holder())
        try:
            await asyncio.wait({request, lost}, return_when=asyncio.FIRST_COMPLETED)
            if request.done():
                return request.result()
            raise _HolderLost(stream_lost(self.holder))
        finally:
            self._pending -= 1
            lost.cancel()
            if not request.done():
                request.cancel()

    async def _watch_holder(self) -> None:
        """While commands wait on the holder, check every heartbeat that it still lives."""
        ownership = self._cluster.ownership
        while self._pending > 0 and not self._lost.is_set():
            await asyncio.sleep(HEARTBEAT_S)
            try:
                holder = await ownership.stream_holder(self._call_id)
                if holder != self.holder:
                    self._closed = True  # its stream ended, or it died with it
                    if not await self._cluster.instance.alive(self.holder):
                        self._lost.set()
            except Exception as exc:  # Redis down: the channel times out by itself
                log.debug("call %s: could not check its stream holder: %s", self._call_id, exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "call %s: remote stream command failed: %s", self._call_id, task.exception()
            )


class _HolderLost(Exception):
    pass


def _not_played(text: str, error: str) -> PlaybackResult:
    return PlaybackResult(
        text=text, status=PlaybackStatus.FAILED, heard_text="", audio_ms=0, heard_ms=0, error=error
    )


def result_to_json(result: PlaybackResult) -> dict[str, Any]:
    return {**dataclasses.asdict(result), "status": result.status.value}


def result_from_json(data: Any) -> PlaybackResult:
    if not isinstance(data, dict):
        raise ProviderError(f"not a playback result: {data!r}")
    try:
        return PlaybackResult(
            text=str(data["text"]),
            status=PlaybackStatus(data["status"]),
            heard_text=str(data["heard_text"]),
            audio_ms=int(data["audio_ms"]),
            heard_ms=int(data["heard_ms"]),
            error=None if data.get("error") is None else str(data["error"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ProviderError(f"not a playback result: {data!r} ({exc})") from None


class ClusterStreams:
    """The cluster side of a MediaSessions registry (its `SharedStreams`, media/registry.py):
    records the streams held here, serves their commands to other instances, and finds the
    streams other instances hold."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._local: Lookup = lambda call_id: None

    def serve(self, local: Lookup) -> None:
        """Serve the media ops on the streams `local` finds (live here)."""
        self._local = local
        channel = self.cluster.channel
        channel.handle("media.speak", self._speak)
        channel.handle("media.play", self._play)
        channel.handle("media.clear", self._clear)
        channel.handle("media.finish", self._finish)
        channel.handle("media.close", self._close)

    async def hold(self, call_id: str) -> None:
        await self.cluster.ownership.hold_stream(call_id)

    async def drop(self, call_id: str) -> None:
        await self.cluster.ownership.drop_stream(call_id)

    async def holder_elsewhere(self, call_id: str) -> str | None:
        """The other live instance that holds the call's stream, if any."""
        holder = await self.cluster.ownership.stream_holder(call_id)
        return holder if holder is not None and holder != self.cluster.id else None

    async def remote(self, call_id: str) -> LiveSession | None:
        holder = await self.holder_elsewhere(call_id)
        return None if holder is None else RemoteSession(self.cluster, call_id, holder)

    # ------------------------------------------------------------------ serving

    def _session(self, payload: dict[str, Any]) -> LiveSession | None:
        call_id = payload.get("callId")
        if not isinstance(call_id, str):
            raise InvalidInput("a media command needs the call's id (callId)")
        session = self._local(call_id)
        return None if session is None or session.closed else session

    async def _speak(self, payload: dict[str, Any]) -> dict[str, Any]:
        text = payload.get("text")
        if not isinstance(text, str):
            raise InvalidInput("media.speak needs the text to say")
        interruptible = bool(payload.get("interruptible", True))
        return await self._played(payload, lambda s: s.speak(text, interruptible=interruptible))

    async def _play(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            ulaw = base64.b64decode(str(payload.get("ulaw", "")), validate=True)
        except ValueError:
            raise InvalidInput("media.play needs µ-law audio in base64") from None
        label = str(payload.get("label", ""))
        return await self._played(payload, lambda s: s.play(ulaw, label))

    async def _played(
        self,
        payload: dict[str, Any],
        start: Callable[[LiveSession], asyncio.Future[PlaybackResult]],
    ) -> dict[str, Any]:
        session = self._session(payload)
        if session is None:
            return {"closed": True}
        try:
            queued = start(session)
        except PlaybackQueueFull as exc:
            return {"queueFull": str(exc)}
        except SessionClosed:
            return {"closed": True}
        # Shielded: a stopping channel cancels this handler, never the playback itself.
        return {"result": result_to_json(await asyncio.shield(queued))}

    async def _clear(self, payload: dict[str, Any]) -> dict[str, Any]:
        session = self._session(payload)
        if session is None:
            return {"closed": True}
        session.clear()
        return {}

    async def _finish(self, payload: dict[str, Any]) -> dict[str, Any]:
        session = self._session(payload)
        if session is None:
            return {"closed": True}
        timeout_s = payload.get("timeoutS")
        wait_s = float(timeout_s) if isinstance(timeout_s, int | float) else PLAYBACK_TIMEOUT_S
        await session.finish_playback(min(wait_s, PLAYBACK_TIMEOUT_S))
        return {}

    async def _close(self, payload: dict[str, Any]) -> dict[str, Any]:
        session = self._session(payload)
        if session is not None:
            await session.close()
        return {"closed": True}


# ---------------------------------------------------------------------- a holder that died


async def end_if_stream_lost(cluster: Cluster, manager: CallManager, call_id: str) -> bool:
    """End the call (ERROR, the reason kept on its record) when the instance recorded as
    holding its stream is dead: the socket died with it and cannot move. True when ended."""
    holder = await cluster.ownership.dead_stream_holder(call_id)
    if holder is None:
        return False
    reason = stream_lost(holder)
    log.warning("call %s: %s; ending the call", call_id, reason)
    try:
        await manager.end(call_id, CallState.ERROR, error=reason)
    except VoiceCallError as exc:  # gone from the store, or the hang-up failed
        log.info("call %s: not ended after its stream holder died: %s", call_id, exc.message)
    await _forget_stream(cluster, call_id, holder)
    return True


async def _forget_stream(cluster: Cluster, call_id: str, holder: str) -> None:
    """Delete `P:stream:{call}` while it still names the dead `holder` (never a newer one)."""
    key = f"{cluster.prefix}:stream:{call_id}"
    await cluster.redis.eval(_DELETE_IF_HOLDER, 1, key, holder)


_DELETE_IF_HOLDER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
