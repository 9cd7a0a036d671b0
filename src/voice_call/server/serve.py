"""Run the app under uvicorn: `serve` for `voicecall serve`, `start_background` for tests/demo.

The port is bound here, before uvicorn starts, and the bound socket is handed to uvicorn: a busy
port becomes a clear PortInUse (not a log line and an exit), there is no window between
checking and binding, and port 0 yields the actual port. `server.json` in the state folder
names the URL and pid while the server listens, so clients find it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Generator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from uvicorn.server import HANDLED_SIGNALS

from voice_call.client.rpc import SERVER_FILE, local_url
from voice_call.runtime import Runtime
from voice_call.server.app import build_app, close_streams
from voice_call.server.fast_ws import FastWebSocketProtocol
from voice_call.server.http_limits import ConnectionLimits, connection_cap, limited_http_protocol
from voice_call.server.media import MAX_FRAME_BYTES

log = logging.getLogger("voice_call.server")
# How long requests still running at shutdown may finish (a waiting `continue` can be long).
GRACEFUL_SHUTDOWN_S = 5.0
# uvicorn's WebSocket implementation, for the media streams' sockets: its sans-I/O websockets
# one (the fastest of uvicorn's three here) with a direct lane for media frames (fast_ws),
# which roughly halves the CPU a frame costs. A name uvicorn knows ("websockets-sansio",
# "wsproto") works too: the media route then takes the plain ASGI path.
WS_PROTOCOL: str | type[asyncio.Protocol] = FastWebSocketProtocol


class PortInUse(Exception):
    pass


class CannotListen(Exception):
    """The address cannot be listened on (an unknown host, an address not on this machine, a
    port below 1024 without the right, …); the message says which and why."""


class ServerFailed(RuntimeError):
    """uvicorn could not start the app (its lifespan startup failed)."""


def bind_socket(
    bind: str, port: int, *, reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    """The server's socket, bound (and listening unless `listen` is off). `reuse_port`: one of
    several workers' sockets on the same port (`serve --workers`); the kernel spreads new
    connections over the listening ones."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise CannotListen(f"cannot listen on {bind!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        # As uvicorn would: a port left in TIME_WAIT by a stopped server is free to reuse.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {port} on {bind} is already in use — is another `voicecall serve` "
                "running? Stop it or set serve.port"
            ) from None
        raise CannotListen(
            f"cannot listen on {bind!r} port {port}: {exc.strerror or exc}"
        ) from None
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        app: Starlette,
        *,
        signals: bool,
        on_started: Callable[[], None],
        on_shutdown: Callable[[], None],
    ) -> None:
        super().__init__(config)
        self._app = app
        self._signals = signals
        self._on_started = on_started
        self._on_shutdown = on_shutdown

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit:  # uvicorn exits the process on a failed startup; we raise instead
            raise ServerFailed("the server could not start; see the log above") from None
        if self.started:
            self._on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Stop accepting first, then end the event streams, which would otherwise hold the
        # graceful wait until its timeout (their clients reconnect and find nobody).
        for server in self.servers:
            server.close()
        close_streams(self._app)
        self._on_shutdown()  # waiting `continue` calls answer now instead of holding the grace
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn's handler (handle_exit) but without re-raising the signal afterwards: a clean
        # Ctrl-C ends `serve` normally. Never in the background (tests, demo): the host owns them.
        if not self._signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


class RunningServer:
    def __init__(
        self, url: str, port: int, server: _Server, task: asyncio.Task[None], runtime: Runtime
    ) -> None:
        self.url = url
        self.port = port
        self._server = server
        self._task = task
        self._runtime = runtime

    async def wait(self) -> None:
        """Until the server stops (a signal, or `stop`)."""
        await asyncio.shield(self._task)

    async def stop(self) -> None:
        self._server.should_exit = True
        try:
            await self._task
        finally:
            forget_server(self._runtime.home)
            await self._runtime.stop()


async def start_background(
    runtime: Runtime, *, app: Starlette | None = None, announce: bool = True
) -> RunningServer:
    """Start serving in this event loop; returns once listening. Stop it with `stop()`."""
    return await _start(runtime, app, signals=False, announce=announce)


async def serve(
    runtime: Runtime,
    *,
    ready: Callable[[str], None] | None = None,
    app: Starlette | None = None,
    worker: bool = False,
) -> None:
    """Serve until SIGINT/SIGTERM. Raises PortInUse before touching anything if the port is busy.

    `worker`: one of `serve --workers N` (server/workers.py): the port is shared (SO_REUSEPORT)
    and the supervising process, not this one, names the server in server.json."""
    running = await _start(runtime, app, signals=True, announce=not worker, reuse_port=worker)
    if ready is not None:
        ready(running.url)
    try:
        await running.wait()
    finally:
        await running.stop()


async def _start(
    runtime: Runtime,
    app: Starlette | None,
    *,
    signals: bool,
    announce: bool,
    reuse_port: bool = False,
) -> RunningServer:
    serve_config = runtime.config.serve
    sock = bind_socket(serve_config.bind, serve_config.port, reuse_port=reuse_port)
    try:
        port = int(sock.getsockname()[1])
        url = local_url(serve_config.bind, port)
        # The port first, so a tunnel opens inside `start()`; and start here (idempotent, the
        # app's lifespan starts it too), so a tunnel or a store that cannot open fails as an
        # exception with its message, not as a traceback in uvicorn's log.
        runtime.bound(port)
        await runtime.start()
        app = app or build_app(runtime)
        limits = ConnectionLimits(
            head_timeout_s=serve_config.head_timeout_ms / 1000,
            max_connections=connection_cap(serve_config.max_connections),
        )
        config = uvicorn.Config(
            app,
            host=serve_config.bind,
            port=port,
            log_level="warning",
            lifespan="on",
            access_log=False,  # `/events?token=` must not end up in a log
            # httptools with bounds on a request head's size and time, and a connection cap
            http=limited_http_protocol(limits),
            # Forwarding headers are `webhookSecurity`'s to trust or not (security/
            # public_url.py); uvicorn would believe them from 127.0.0.1 and rewrite the client
            # address and scheme before our rules see the request.
            proxy_headers=False,
            timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
            ws=WS_PROTOCOL,
            # A client that offers permessage-deflate would otherwise get it, and zlib on both
            # sides of every 20 ms frame doubles a frame's CPU (bench/README.md, streams).
            ws_per_message_deflate=False,
            # The media route refuses frames over 64 KiB anyway; a peer may not make us
            # buffer more than that of one message (uvicorn's default is 16 MiB).
            ws_max_size=MAX_FRAME_BYTES + 1024,
        )
        listening = asyncio.Event()
        server = _Server(
            config, app, signals=signals, on_started=listening.set, on_shutdown=runtime.drain
        )
        task = asyncio.create_task(server.serve(sockets=[sock]))
        waiter = asyncio.create_task(listening.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()  # raises why it stopped
            raise ServerFailed("the server stopped while starting")
    except BaseException:
        sock.close()
        await runtime.stop()
        raise
    if announce:
        announce_server(runtime.home, url)
    log.info("voice-call server listening on %s", url)
    _freeze_heap()
    return RunningServer(url, port, server, task, runtime)


def _freeze_heap() -> None:
    """Everything loaded by now (modules, classes, config) lives as long as the process: put it
    out of the cyclic collector's sight, so a full collection scans only what calls create.
    Without it a gen-2 pass over the libraries' objects stops the loop ~50 ms (at 500 media
    streams, frames late by that much). Once a process: garbage collected first, not frozen."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def announce_server(home: Path, url: str) -> None:
    """server.json: where clients find the server, and the pid that must be alive for it."""
    path = home / SERVER_FILE
    tmp = path.with_name(f".{SERVER_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}) + "\n", encoding="utf-8")
    tmp.replace(path)


def forget_server(home: Path) -> None:
    """Remove server.json if it is still ours (another server may have replaced it)."""
    path = home / SERVER_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(data, dict) and data.get("pid") == os.getpid():
        path.unlink(missing_ok=True)
