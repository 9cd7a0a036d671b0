"""The start/stop, `url` and `async with` every fake service shares: one ASGI app on loopback.

A carrier emulator or a fake AI service subclasses `LoopbackService`, says which app it serves
(`asgi_app`) and, when it owns more than the app (HTTP clients, running calls), what to open
before the first request and what to close around the server's stop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Self

from voice_call.asgi_server import BackgroundServer

# How long an idle client connection stays open. A real carrier's API keeps one open well past
# httpx's 5 s pool expiry; at uvicorn's default of 5 s the server could close a connection at
# the instant our client reuses it, and the request fails unsent (a ReadError, seen in CI).
IDLE_KEEP_ALIVE_S = 60


class LoopbackService(ABC):
    """`async with service:` serves `asgi_app()` on 127.0.0.1 (a free port unless told one)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._server: BackgroundServer | None = None

    @abstractmethod
    def asgi_app(self) -> Any:
        """The app to serve; built at start, so it may read everything `__init__` set."""

    async def _on_start(self) -> None:  # noqa: B027 (an optional hook)
        """Runs before the app answers its first request (open clients, shared call state)."""

    async def _on_stop(self) -> None:  # noqa: B027 (an optional hook)
        """Runs while the app still answers (end running calls and their tasks)."""

    async def _after_stop(self) -> None:  # noqa: B027 (an optional hook)
        """Runs once the app has stopped answering (close clients)."""

    @property
    def url(self) -> str:
        """The base URL the app answers on: what replaces the real service's."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running: use `async with`")
        return self._server.url

    async def start(self) -> str:
        await self._on_start()
        self._server = BackgroundServer(
            self.asgi_app(),
            host=self._host,
            port=self._port,
            lifespan="off",
            keep_alive_s=IDLE_KEEP_ALIVE_S,
        )
        return await self._server.start()

    async def stop(self) -> None:
        await self._on_stop()
        if self._server is not None:
            await self._server.stop()
        await self._after_stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
