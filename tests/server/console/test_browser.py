"""The console in a real headless Chromium: log in, watch a mock conversation, end it.

Every wait is on a condition in the page (Playwright's `expect`), with generous timeouts.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.server.console.stack import CALLEE_LINES, GREETING, UI_TIMEOUT_MS, login_link
from tests.server.stack import Rpc
from voice_call.runtime import Runtime
from voice_call.server.serve import RunningServer
from voice_call.store.base import LoggedEvent

TRANSCRIPT = [
    GREETING,
    CALLEE_LINES[0],
    f"You said: {CALLEE_LINES[0]}",
    CALLEE_LINES[1],
    f"You said: {CALLEE_LINES[1]}",
]


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    problems: list[str] = []  # CSP violations and script errors (4xx answers are expected)
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    yield page
    await context.close()
    assert not problems, problems


async def log_in(page: Page, server: RunningServer, http: httpx.AsyncClient, rt: Runtime) -> None:
    await page.goto(server.url + await login_link(http, rt))
    await expect(page).to_have_url(server.url + "/console")
    await expect(page.locator("#stream-state")).to_have_text("live", timeout=UI_TIMEOUT_MS)


async def test_watch_a_call_live_and_end_it_from_the_page(
    page: Page, vc_server: RunningServer, vc_http: httpx.AsyncClient, vc_runtime: Runtime, rpc: Rpc
) -> None:
    await log_in(page, vc_server, vc_http, vc_runtime)
    await expect(page.locator("#no-calls")).to_be_visible()
    placed = await rpc(
        "voicecall.initiate", {"message": GREETING, "mode": "conversation"}
    )  # from elsewhere: the row arrives by the event stream
    call_id = placed["result"]["callId"]
    row = page.locator(f'#calls tr[data-call-id="{call_id}"]')
    await expect(row).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(row.locator("td.col-state")).to_have_text(
        re.compile("answered|speaking|listening"), timeout=UI_TIMEOUT_MS
    )
    await expect(row.locator("td.col-to")).to_have_text("+15555550123")

    await row.locator("td.col-call a").click()
    await expect(page).to_have_url(f"{vc_server.url}/console/calls/{call_id}")
    bubbles = page.locator("#transcript .bubble p")
    await expect(bubbles).to_have_text(TRANSCRIPT, timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#transcript .bubble.partial")).to_have_count(0)
    speakers = page.locator("#transcript .bubble .who")
    await expect(speakers).to_have_text(["bot", "caller", "bot", "caller", "bot"])
    await expect(page.locator("#latency tbody tr")).to_have_count(2)
    await expect(page.locator("#latency-chart rect.bar")).to_have_count(4 + 2 * 2)
    await expect(page.locator("#events tbody tr").first).to_contain_text("call.created")

    await page.locator("#end-call").click()
    await expect(page.locator("#state")).to_have_text("hangup-bot", timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#end-reason")).to_have_text("hangup-bot")
    await expect(page.locator("#end-call")).to_be_disabled()
    record = await vc_runtime.store.get(call_id)
    assert record is not None and record.end_reason == "hangup-bot"

    await page.locator("a.brand").click()
    await expect(page.locator(f'#history tr:has-text("{call_id[:8]}")')).to_have_count(1)


async def test_place_a_call_from_the_page_with_the_rpc_errors(
    page: Page, vc_server: RunningServer, vc_http: httpx.AsyncClient, vc_runtime: Runtime, rpc: Rpc
) -> None:
    await log_in(page, vc_server, vc_http, vc_runtime)
    form = page.locator("#place")
    await form.locator("input[name=to]").fill("12345")
    await form.locator("input[name=message]").fill(GREETING)
    await form.locator("button").click()
    refused = await rpc("voicecall.initiate", {"to": "12345", "message": GREETING})
    await expect(page.locator("#place-error")).to_have_text(refused["error"]["message"])
    assert await vc_runtime.store.list_recent() == []

    await form.locator("input[name=to]").fill("+15555550199")
    await form.locator("select[name=mode]").select_option("conversation")
    await form.locator("button").click()
    await expect(page.locator("#calls tbody tr")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#calls td.col-to")).to_have_text("+15555550199")
    (placed,) = await vc_runtime.store.list_recent()
    await rpc("voicecall.end", {"callId": placed.call_id})
    await expect(page.locator("#calls td.col-state")).to_have_text("hangup-bot")


async def test_the_token_login_form(
    page: Page, vc_server: RunningServer, vc_runtime: Runtime
) -> None:
    await page.goto(vc_server.url + "/console/api/calls")
    assert "log in first" in (await page.content())
    await page.goto(vc_server.url + "/console")
    await page.locator("#token").fill("not-the-token")
    await page.locator("#login").click()
    await expect(page.locator("#login-error")).to_contain_text("not the RPC token")
    await page.locator("#token").fill(vc_runtime.rpc_token)
    await page.locator("#login").click()
    await expect(page.locator("#stream-state")).to_have_text("live", timeout=UI_TIMEOUT_MS)
    await page.locator("#logout").click()
    await expect(page.locator("#token")).to_be_visible()


async def log_entry(runtime: Runtime, call_id: str, kind: str, data: dict[str, Any]) -> None:
    """Log one entry on the call as the manager does (store, then bus): the page's input."""
    record = await runtime.store.get(call_id)
    assert record is not None
    entry = LoggedEvent(call_id=call_id, type=kind, at=time.time(), state=record.state, data=data)
    logged = await runtime.store.save(record, entry)
    assert logged is not None
    runtime.bus.publish(logged)


async def test_partials_are_replaced_and_barge_ins_marked(
    page: Page, vc_server: RunningServer, vc_http: httpx.AsyncClient, vc_runtime: Runtime, rpc: Rpc
) -> None:
    await log_in(page, vc_server, vc_http, vc_runtime)
    call_id = (await rpc("voicecall.initiate", {"message": GREETING}))["result"]["callId"]
    await page.goto(f"{vc_server.url}/console/calls/{call_id}")
    bubbles = page.locator("#transcript .bubble p")
    await expect(bubbles).to_have_text(TRANSCRIPT, timeout=UI_TIMEOUT_MS)

    await log_entry(
        vc_runtime, call_id, "call.speech", {"transcript": "Actually, wait", "isFinal": False}
    )
    partial = page.locator("#transcript .bubble.partial p")
    await expect(partial).to_have_text("Actually, wait")
    await log_entry(vc_runtime, call_id, "call.speech", {"transcript": "Actually, wait a second."})
    await expect(partial).to_have_count(0)
    await expect(bubbles).to_have_text([*TRANSCRIPT, "Actually, wait a second."])

    interrupted = {"turn": 3, "kind": "reply", "totalMs": 900.0, "outcome": "interrupted"}
    await log_entry(vc_runtime, call_id, "turn.replied", interrupted)
    barged = page.locator("#transcript .bubble.barge-in")
    await expect(barged).to_have_count(1)
    await expect(barged.locator("p")).to_have_text(TRANSCRIPT[-1])
    await expect(barged.locator(".mark")).to_have_text("interrupted by the caller")
    await expect(page.locator("#latency tbody tr").last).to_contain_text("interrupted")
    await rpc("voicecall.end", {"callId": call_id})
    await expect(page.locator("#state")).to_have_text("hangup-bot")
