"""What the console tests share: the server's config, logging in, and the headless browser.

The browser is Debian's Chromium (`/usr/bin/chromium`, installed by `.ci/run`; another path
with `VOICECALL_CHROMIUM`) driven by Playwright: nothing is downloaded at test time.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
from playwright.async_api import Browser, async_playwright, expect

from voice_call.runtime import Runtime

CHROMIUM = os.environ.get("VOICECALL_CHROMIUM", "/usr/bin/chromium")
# generous: a loaded 2-core CI machine runs Chromium beside the server and other tests
UI_TIMEOUT_MS = 30_000
expect.set_options(timeout=UI_TIMEOUT_MS)  # every `expect` in the page, not only the marked ones
GREETING = "Hi! This is the clinic's assistant calling to confirm your appointment."
CALLEE_LINES = ("Hello, this is Sam speaking.", "Yes, Tuesday at three still works for me.")
# A conversation the callee keeps open after its lines (no hangup): the page ends it.
LIVE_CALL: dict[str, Any] = {
    "toNumber": "+15555550123",
    "outbound": {"defaultMode": "conversation"},
    "mock": {"answerDelayMs": 200, "replyDelayMs": 200, "replies": list(CALLEE_LINES)},
}


async def login_link(http: httpx.AsyncClient, runtime: Runtime) -> str:
    """A one-time login link's path, minted as `voicecall console` does."""
    response = await http.post(
        "/console/api/login-links", headers={"Authorization": f"Bearer {runtime.rpc_token}"}
    )
    assert response.status_code == 200, response.text
    path: str = response.json()["path"]
    return path


async def logged_in(http: httpx.AsyncClient, runtime: Runtime) -> str:
    """Log `http` in (its cookie jar keeps the session); returns the page's CSRF token."""
    response = await http.get(await login_link(http, runtime))
    assert response.status_code == 303, response.text
    page = await http.get("/console")
    marker = 'name="csrf-token" content="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, timeout=120_000)
        try:
            yield browser
        finally:
            await browser.close()
