"""The store tests' real Redis: one `redis-server` per session (tests/store/redis_server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.store.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
