"""Fixtures of the console tests: the live-call server config and a headless Chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser

from tests.server.console.stack import LIVE_CALL, chromium
from tests.server.stack import server_config
from voice_call.config import Config


@pytest.fixture
def vc_config() -> Config:
    return server_config(**LIVE_CALL)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async for launched in chromium():
        yield launched
