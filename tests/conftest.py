"""Shared fixtures for the server and client tests: a mock-provider Runtime and a live server.

The server runs on a real loopback socket (port 0) in the test's event loop, with a tmp state
folder; `rpc` posts JSON-RPC with the runtime's bearer token. Fixtures only: tests import the
server's config and limits from tests/server/stack.py and helpers from tests/support.py.
Two settings besides: the hypothesis profile below (no wall-clock checks in property tests), and
no terminal size in the environment the tests hand to the subprocesses they start.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

from tests.log_errors import error_records
from tests.server.stack import TEST_LIMITS, Rpc, server_config
from tests.store.redis_server import RedisServer
from voice_call.config import Config
from voice_call.runtime import Runtime
from voice_call.server.app import build_app
from voice_call.server.serve import RunningServer, start_background

# Property tests judge behaviour, not speed: hypothesis's wall-clock checks (a 200 ms deadline
# per example, "input generation is slow") fail on a loaded 2-core machine while every example
# passes. Tests that set their own `@settings` inherit this profile for what they leave out.
settings.register_profile("voice-call", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("voice-call")

# pytest-xdist's workers set COLUMNS=80 and LINES=24; a `voicecall` subprocess would then lay its
# tables out 80 columns wide (cutting call ids) instead of as on a pipe, unlike a serial run.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)


@pytest.fixture
def vc_home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def vc_config() -> Config:
    return server_config()


@pytest.fixture
async def vc_runtime(vc_config: Config, vc_home: Path) -> AsyncIterator[Runtime]:
    runtime = Runtime(vc_config, vc_home)
    yield runtime
    await runtime.stop()


@pytest.fixture
async def vc_server(vc_runtime: Runtime) -> AsyncIterator[RunningServer]:
    app = build_app(vc_runtime, limits=TEST_LIMITS, keepalive_s=0.2)
    server = await start_background(vc_runtime, app=app)
    yield server
    await server.stop()


@pytest.fixture
async def vc_http(vc_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=vc_server.url, timeout=10) as http:
        yield http


@pytest.fixture
def rpc(vc_http: httpx.AsyncClient, vc_runtime: Runtime) -> Rpc:
    """`await rpc(method, params)` → the whole JSON-RPC reply (asserting HTTP 200)."""
    ids = iter(range(1, 1_000_000))

    async def call(method: str, params: Any = None) -> dict[str, Any]:
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": next(ids), "method": method}
        if params is not None:
            request["params"] = params
        response = await vc_http.post(
            "/rpc", json=request, headers={"Authorization": f"Bearer {vc_runtime.rpc_token}"}
        )
        assert response.status_code == 200, response.text
        reply: dict[str, Any] = response.json()
        return reply

    return call


@pytest.fixture
def no_logged_tracebacks() -> Iterator[None]:
    """Nothing the test sends may be logged at ERROR or with a traceback (checked at the end:
    for a property, once all of its examples ran)."""
    with error_records() as records:
        yield
    assert not records.records, records.lines()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real `redis-server` (tests/store/redis_server.py), one per session (per xdist worker):
    tests keep apart by key prefix (`RedisServer.prefix()`)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
