"""The media WebSocket route (`streaming.streamPath`, or `realtime.streamPath` with realtime
voice): carrier audio streams, both ways.

Admission, in order (docs/security.md §2):
1. Shutting down, or `maxConnections` sockets already open → HTTP 503 before the upgrade.
2. Accept; a socket is *pending* until its start frame is accepted: more than 32 pending in all
   or 4 from one client → close 1013. No start within 5 s → close 1008 "start timeout".
3. The start frame's token (Twilio: `start.customParameters.token`; Telnyx and Plivo: the
   `token` query parameter of the stream URL) must verify, be unexpired, name a live call of
   this provider (by our id, or the carrier's when the answer did not know ours), and that
   call's carrier id must be the one in the start frame → else 1008 with the reason, and no
   STT session is ever opened. A second start → 1008.
   One stream per call, one stream per token: a call whose stream is live (or being admitted)
   refuses another socket (1008 "media stream already live for this call"; the live one keeps
   going), and a token that opened a stream is spent, in the store, for every instance (1008
   "stream token already used"; security/stream_tokens.py).
4. Only µ-law 8 kHz is accepted (1008 otherwise); STT connects (pre-warmed when the provider
   asked while the phone rang) → 1011 if it cannot. With realtime voice the stream is a
   RealtimeSession (realtime/bridge.py) instead, and its model session connects (pre-warmed
   likewise); a model that cannot be reached ends the call with an apology in the carrier's
   own voice, reason error and the model's error on the record, then 1011.

Then frames flow: each inbound frame is at most 64 KiB (1009 otherwise); more than 1 MiB
waiting to be written means the carrier is not reading → 1013. When the socket ends, the
session is closed and the registry gives the call `streaming.dropGraceMs` to reconnect
before ending it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from voice_call.config import StreamingConfig
from voice_call.media.outbox import MAX_BUFFERED_BYTES, Outbox
from voice_call.media.session import MediaSession
from voice_call.media.stream_protocols import (
    CarrierError,
    Malformed,
    Media,
    Start,
    Stop,
    StreamProtocol,
    protocol_for,
)
from voice_call.models import CallRecord, CallState
from voice_call.realtime.bridge import RealtimeSession
from voice_call.realtime.model import RealtimeError, RealtimeModel, SessionSetup
from voice_call.runtime import Runtime
from voice_call.security.exposure import forwarding_trust
from voice_call.security.public_url import client_ip
from voice_call.security.stream_tokens import TokenCheck, TokenProblem
from voice_call.server.fast_ws import DIRECT, DirectChannel
from voice_call.speech.stt.base import SttError

log = logging.getLogger("voice_call.server.media")

MAX_FRAME_BYTES = 64 * 1024
POLICY, TOO_BIG, INTERNAL, TRY_LATER = 1008, 1009, 1011, 1013
ALREADY_LIVE = "media stream already live for this call"
Session = MediaSession | RealtimeSession


@dataclass(frozen=True)
class MediaLimits:
    max_connections: int = 128
    max_pending: int = 32
    max_pending_per_client: int = 4
    start_timeout_s: float = 5.0
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_buffered_bytes: int = MAX_BUFFERED_BYTES

    @classmethod
    def from_config(cls, streaming: StreamingConfig) -> MediaLimits:
        return cls(
            max_connections=streaming.max_connections,
            max_pending=streaming.max_pending_connections,
            max_pending_per_client=streaming.max_pending_connections_per_ip,
            start_timeout_s=streaming.pre_start_timeout_ms / 1000,
        )


class Socket:
    """One media connection: Starlette's WebSocket for the handshake, the query and closing;
    for the frames, 50 a second each way, the raw ASGI callables (skipping the wrapper's
    per-message state checks), or better the server's direct channel where it offers one
    (`fast_ws`: no message dicts, queue or task switch per frame)."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.ws = WebSocket(scope, receive, send)
        self.receive = receive
        self._send = send
        direct = (scope.get("extensions") or {}).get(DIRECT)
        self.channel: DirectChannel | None = (
            direct.get("channel") if isinstance(direct, dict) else None
        )

    async def send_text(self, text: str) -> None:
        await self._send({"type": "websocket.send", "text": text})


class MediaRefused(Exception):
    """A media stream we close with WebSocket close `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class MediaRoute:
    def __init__(
        self, runtime: Runtime, limits: MediaLimits | None = None, *, carrier: str | None = None
    ) -> None:
        self.runtime = runtime
        self.limits = limits or MediaLimits.from_config(runtime.config.streaming)
        self.protocol_class = protocol_for(carrier or runtime.config.provider)
        self.open = 0
        self.pending = 0
        self.pending_by_client: dict[str, int] = {}
        self.closing = False
        self.trust = forwarding_trust(runtime.config)

    def close(self) -> None:
        """Shutdown has begun: refuse new streams (open ones end with the server)."""
        self.closing = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI endpoint (mounted with `WebSocketRoute(path, route)`)."""
        await self.handle(Socket(scope, receive, send))

    async def handle(self, sock: Socket) -> None:
        ws = sock.ws
        if self.closing or not self.runtime.running:
            await _deny(ws, "the voice-call server is shutting down")
            return
        if self.open >= self.limits.max_connections:
            await _deny(ws, f"too many media streams ({self.limits.max_connections} open)")
            return
        self.open += 1
        try:
            await ws.accept()
            await self._serve(sock)
        except MediaRefused as exc:
            log.info("media stream refused (%d): %s", exc.code, exc.reason)
            await _close(ws, exc.code, exc.reason)
        except WebSocketDisconnect:
            pass
        finally:
            self.open -= 1

    # ------------------------------------------------------------------ before the start frame

    async def _serve(self, sock: Socket) -> None:
        protocol = self.protocol_class()
        start = await self._pending(sock, protocol)
        check, record = await self._admit(sock.ws, protocol, start)
        media = self.runtime.media
        if not media.reserve(record.call_id):
            raise MediaRefused(POLICY, ALREADY_LIVE)
        try:
            await self._spend(check, record)
            protocol.bind(start)
            await self._stream(sock, protocol, record, check.call_id or record.call_id)
        finally:
            media.release(record.call_id)

    async def _spend(self, check: TokenCheck, record: CallRecord) -> None:
        """Use the token up (MediaRefused when it was used before)."""
        try:
            fresh = await self.runtime.media.spend(record.call_id, check.grant or "")
        except Exception:
            log.exception("call %s: the stream token could not be recorded", record.call_id)
            raise MediaRefused(INTERNAL, "could not record the stream now; retry") from None
        if not fresh:
            raise MediaRefused(POLICY, TokenProblem.SPENT.value)

    async def _pending(self, sock: Socket, protocol: StreamProtocol) -> Start:
        # Behind a trusted proxy, the client it forwarded for (as for webhooks).
        remote = sock.ws.client.host if sock.ws.client else None
        client = client_ip(self.trust, remote, sock.ws.headers)
        per_client = self.pending_by_client.get(client, 0)
        if self.pending >= self.limits.max_pending:
            raise MediaRefused(TRY_LATER, "too many media streams waiting to start")
        if per_client >= self.limits.max_pending_per_client:
            raise MediaRefused(
                TRY_LATER, "too many media streams waiting to start from this client"
            )
        self.pending += 1
        self.pending_by_client[client] = per_client + 1
        try:
            async with asyncio.timeout(self.limits.start_timeout_s):
                while True:
                    frame = protocol.parse(self._sized(await self._receive(sock)))
                    if isinstance(frame, Start):
                        return frame
                    if isinstance(frame, Stop):
                        raise WebSocketDisconnect(1000)
                    # `connected`, media racing ahead of start, noise: wait for the start
        except TimeoutError:
            raise MediaRefused(POLICY, "start timeout") from None
        finally:
            self.pending -= 1
            left = self.pending_by_client[client] - 1
            if left:
                self.pending_by_client[client] = left
            else:
                del self.pending_by_client[client]

    async def _receive(self, sock: Socket) -> str | bytes:
        message = await sock.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data: str | bytes | None = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        return data

    def _sized(self, data: str | bytes) -> str | bytes:
        """`data`, or MediaRefused when it is over the frame size limit."""
        limit = self.limits.max_frame_bytes
        size = len(data)
        if isinstance(data, str) and size * 4 > limit:
            size = len(data.encode())  # characters undercount UTF-8 bytes
        if size > limit:
            raise MediaRefused(TOO_BIG, f"frame larger than {limit} bytes")
        return data

    async def _admit(
        self, ws: WebSocket, protocol: StreamProtocol, start: Start
    ) -> tuple[TokenCheck, CallRecord]:
        token = ws.query_params.get("token") if protocol.token_in_query else start.token
        check = self.runtime.media.tokens.check(token)
        if not check.ok or check.call_id is None or check.grant is None:
            raise MediaRefused(POLICY, str(check.problem))
        record = await self._call_named(check.call_id)
        if record is None or record.provider != self.runtime.provider.name:
            raise MediaRefused(POLICY, "unknown call")
        if record.terminal:
            raise MediaRefused(POLICY, "call has ended")
        carrier_ids = {record.provider_call_id, *record.metadata.get("providerCallIdAliases", [])}
        if record.provider_call_id and start.call_id not in carrier_ids:
            raise MediaRefused(POLICY, TokenProblem.OTHER_CALL.value)
        if start.encoding != "pcmu" or start.sample_rate != 8000:
            raise MediaRefused(
                POLICY,
                f"unsupported media format {start.encoding}/{start.sample_rate}:"
                " stream audio/x-mulaw at 8000 Hz",
            )
        return check, record

    async def _call_named(self, name: str) -> CallRecord | None:
        """The call a token names: by our id, else by the carrier's (an inbound call's answer
        that did not know ours), from the store, so any instance can admit its stream."""
        store = self.runtime.store
        record = await store.get(name)
        if record is None:
            record = await store.find_by_provider_call_id(self.runtime.provider.name, name)
        return record

    # ------------------------------------------------------------------ the live stream

    async def _stream(
        self, sock: Socket, protocol: StreamProtocol, record: CallRecord, warmed_as: str
    ) -> None:
        """`warmed_as`: the name the token gave the call, which its pre-warmed STT is under."""
        media = self.runtime.media
        closing: list[tuple[int, str]] = []

        def close_soon(code: int, reason: str) -> None:
            if not closing:
                closing.append((code, reason))
                reader.cancel()

        outbox = Outbox(
            sock.send_text,
            try_send=sock.channel.send_text_now if sock.channel is not None else None,
            limit_bytes=self.limits.max_buffered_bytes,
            on_overflow=lambda: close_soon(TRY_LATER, "backpressure: the stream is not reading"),
            stats=media.stats,
        )
        session: Session
        setup: SessionSetup | None = None
        if media.models is not None:
            model, setup = media.take_model(warmed_as, record)
            session = self._bridge(record, protocol, outbox, close_soon, model)
        else:
            session = MediaSession(
                record.call_id,
                protocol,
                outbox,
                media.take_stt(warmed_as, record),
                media.voice_for(record),
                media.sink,
                scheduler=media.scheduler,
                on_fatal=close_soon,
            )
        writer = asyncio.create_task(_write(outbox))
        reader = asyncio.create_task(self._read(sock, protocol, session))
        reason = CallState.ERROR
        try:
            if isinstance(session, RealtimeSession):
                assert setup is not None
                await self._open_model(session, record, setup)
            else:
                try:
                    await session.stt.connect()
                except SttError as exc:
                    log.warning("call %s: %s", record.call_id, exc)
                    raise MediaRefused(INTERNAL, "speech-to-text unavailable") from None
            media.register(session)
            with contextlib.suppress(asyncio.CancelledError):
                if await reader:
                    reason = CallState.HANGUP_USER  # the carrier ended the stream: call over
            if closing:
                raise MediaRefused(*closing[0])
        finally:
            reader.cancel()
            outbox.close()
            writer.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
            await session.close()
            media.stream_ended(session, reason)

    def _bridge(
        self,
        record: CallRecord,
        protocol: StreamProtocol,
        outbox: Outbox,
        close_soon: Callable[[int, str], None],
        model: RealtimeModel,
    ) -> RealtimeSession:
        """The call's realtime voice bridge on `model` (pre-warmed while the phone rang)."""
        runtime = self.runtime
        assert runtime.realtime is not None
        return RealtimeSession(
            record.call_id,
            protocol,
            outbox,
            model,
            runtime.media.sink,
            runtime.call_control,
            runtime.realtime.bridge_settings(),
            scheduler=runtime.media.scheduler,
            on_fatal=close_soon,  # lateness is measured once, by the outbox (as for streams)
        )

    async def _open_model(
        self, session: RealtimeSession, record: CallRecord, setup: SessionSetup
    ) -> None:
        """Start the bridge (connecting its model unless the pre-warm did); a model that
        cannot be reached ends the call with an apology (MediaRefused 1011)."""
        try:
            await session.start(setup)
        except RealtimeError as exc:
            log.warning("call %s: realtime model unavailable: %s", record.call_id, exc)
            await session.close()
            apology = session.settings.apology_text
            await self.runtime.call_control.end_with_apology(record.call_id, apology, str(exc))
            raise MediaRefused(INTERNAL, "realtime voice model unavailable") from None

    async def _read(self, sock: Socket, protocol: StreamProtocol, session: Session) -> bool:
        """Feed frames to the session; True when the carrier ended the stream on purpose: a
        `stop`, or a clean close from a carrier that has no stop frame (Plivo)."""
        feed = _Feed(self, protocol, session)
        if sock.channel is not None:
            return await feed.pushed(sock.channel)
        while True:
            try:
                raw = await self._receive(sock)
            except WebSocketDisconnect as gone:
                return feed.gone(gone.code)
            ended = feed.frame(raw)
            if ended is not None:
                return ended


class _Feed:
    """One stream's frames after its start frame, into its session: pulled by `_read` from ASGI
    `receive`, or pushed synchronously by the server's direct channel (a `FrameSink`)."""

    def __init__(self, route: MediaRoute, protocol: StreamProtocol, session: Session) -> None:
        self.route = route
        self.protocol = protocol
        self.session = session
        self.malformed = 0
        self.ended: asyncio.Future[bool] | None = None
        # Up to this many characters a frame is within the byte limit however it encodes
        # (UTF-8: at most 4 bytes a character), so `_sized` need not look.
        self._surely_small = route.limits.max_frame_bytes // 4

    def frame(self, raw: str | bytes) -> bool | None:
        """None to go on, else the stream is over (True: ended on purpose, as `_read`)."""
        if len(raw) > self._surely_small:
            raw = self.route._sized(raw)
        frame = self.protocol.parse(raw)
        if frame.__class__ is Media:  # the common case first
            self.session.handle(frame)
            return None
        if isinstance(frame, Stop):
            return True
        if isinstance(frame, Start):
            raise MediaRefused(POLICY, "duplicate start")
        if isinstance(frame, Malformed):
            self.malformed += 1
            if self.malformed == 1 or self.malformed % 1000 == 0:
                log.warning(
                    "call %s: %s (%d so far)", self.session.call_id, frame.reason, self.malformed
                )
            return None
        if isinstance(frame, CarrierError):
            log.warning("call %s: carrier stream error %s", self.session.call_id, frame)
            return None
        self.session.handle(frame)
        return None

    def gone(self, code: int) -> bool:
        return not self.protocol.sends_stop and code in (1000, 1001)

    async def pushed(self, channel: DirectChannel) -> bool:
        """Until the stream is over, with every frame pushed through `message`."""
        self.ended = asyncio.get_running_loop().create_future()
        channel.attach(self)
        try:
            return await self.ended
        finally:
            channel.detach()

    # FrameSink: called from the server's data_received, so nothing may escape.
    def message(self, data: str | bytes) -> None:
        ended = self.ended
        if ended is None or ended.done():
            return
        try:
            result = self.frame(data)
        except Exception as exc:  # MediaRefused or a failing session: ends the stream as in `_read`
            ended.set_exception(exc)
            return
        if result is not None:
            ended.set_result(result)

    def disconnected(self, code: int) -> None:
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(self.gone(code))


async def _write(outbox: Outbox) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await outbox.run()


async def _deny(ws: WebSocket, reason: str) -> None:
    with contextlib.suppress(RuntimeError, OSError):
        await ws.send_denial_response(PlainTextResponse(reason, status_code=503))


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await ws.close(code, reason[:120])
