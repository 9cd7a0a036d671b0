"""Screenshots of the console for the README: `python -m tests.server.console.screenshots`.

Runs a mock-carrier server in a temporary state folder, places a few demo calls (one still
live, the others ended), and saves `docs/img/console-calls.png` and `docs/img/console-call.png`
from the same headless Chromium the tests use.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.async_api import expect

from tests.server.console.stack import (
    CALLEE_LINES,
    GREETING,
    LIVE_CALL,
    UI_TIMEOUT_MS,
    chromium,
    login_link,
)
from tests.server.stack import server_config
from tests.support import wait_until
from voice_call.client.rpc import RpcClient
from voice_call.runtime import Runtime
from voice_call.server.serve import start_background

OUT = Path(__file__).resolve().parents[3] / "docs" / "img"


async def main(out: Path) -> None:
    config = server_config(**LIVE_CALL)
    with tempfile.TemporaryDirectory(prefix="voicecall-shots-") as folder:
        runtime = Runtime(config, Path(folder))
        server = await start_background(runtime)
        try:
            await _shoot(server.url, runtime, out)
        finally:
            await server.stop()


async def _shoot(url: str, runtime: Runtime, out: Path) -> None:
    rpc = RpcClient(url, runtime.rpc_token)
    ended = await rpc.call("voicecall.initiate", {"to": "+15555550142", "message": GREETING})
    live = await rpc.call("voicecall.initiate", {"message": GREETING})
    other = await rpc.call("voicecall.initiate", {"to": "+15555550177", "message": "Hello!"})

    async def talked(call_id: str) -> bool:
        record = await runtime.store.get(call_id)
        return record is not None and len(record.latency) == len(CALLEE_LINES)

    for call in (ended, live, other):
        await wait_until(lambda c=call["callId"]: talked(c), 30, what="the demo conversation")
    await rpc.call("voicecall.end", {"callId": ended["callId"]})
    async for browser in chromium():
        page = await browser.new_page(viewport={"width": 1280, "height": 860})
        page.set_default_timeout(UI_TIMEOUT_MS)
        async with httpx.AsyncClient(base_url=url) as http:
            await page.goto(url + await login_link(http, runtime))
        await expect(page.locator("#calls tbody tr")).to_have_count(2)
        await expect(page.locator("#history tbody tr")).to_have_count(1)
        await page.screenshot(path=str(out / "console-calls.png"), full_page=True)
        await page.goto(f"{url}/console/calls/{live['callId']}")
        await expect(page.locator("#latency tbody tr")).to_have_count(len(CALLEE_LINES))
        await page.screenshot(path=str(out / "console-call.png"), full_page=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
