"""Console listen-in over real sockets: a logged-in page hears a streamed call both ways mixed;
nobody else hears anything."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.async_api import Browser, expect

from tests.media.carrier import loud_frames
from tests.media.stack import media_server
from tests.server.console.stack import UI_TIMEOUT_MS, logged_in, login_link
from tests.support import wait_until
from voice_call.audio.g711 import FRAME_BYTES, ulaw_to_pcm16
from voice_call.server.console.listen import SILENT, _mixed

GREETING = "Hello there. This is your appointment reminder."


class Heard:
    """The audio body, read frame by frame until a test's condition holds."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.aiter_bytes()
        self.audio = bytearray()

    def frames(self) -> list[bytes]:
        return [bytes(self.audio[i : i + FRAME_BYTES]) for i in range(0, len(self.audio), 160)]

    async def until(self, check: Callable[[list[bytes]], bool]) -> None:
        async with asyncio.timeout(20):
            while not check(self.frames()):
                self.audio.extend(await anext(self.chunks))


async def test_a_logged_in_page_hears_the_caller_then_the_bot(tmp_path: Path) -> None:
    tone = loud_frames(25)
    async with media_server(tmp_path, "twilio") as media:
        record = await media.new_call()
        carrier = media.client(record)
        await carrier.open()
        session = await media.runtime.media.wait_for(record.call_id, 5)
        assert session is not None and session.tap is None
        async with httpx.AsyncClient(base_url=media.server.url, timeout=20) as http:
            csrf = await logged_in(http, media.runtime)
            path = f"/console/api/calls/{record.call_id}/listen"
            async with http.stream("POST", path, headers={"X-CSRF-Token": csrf}) as response:
                assert response.status_code == 200
                assert response.headers["content-type"] == "audio/basic"
                assert response.headers["cache-control"] == "no-store"
                body = Heard(response)
                carrier.talk(tone)  # the caller, alone on the line
                await body.until(lambda frames: frames.count(tone[-1]) >= 1)
                speaking = session.speak(GREETING, interruptible=False)  # then the bot

                def voiced(frame: bytes) -> bool:
                    return frame in sent_frames() and frame != SILENT

                def sent_frames() -> set[bytes]:
                    return {base64.b64decode(f.frame["media"]["payload"])
                            for f in carrier.media_frames()}  # fmt: skip

                await body.until(lambda frames: any(voiced(f) for f in frames))
            await asyncio.wait_for(speaking, 20)

            async def tap_gone() -> bool:
                return session.tap is None

            await wait_until(tap_gone)  # the page stopped reading: nothing taps the stream
        await carrier.close()
    frames = body.frames()
    first_bot = next(i for i, f in enumerate(frames) if voiced(f))
    assert all(f in frames[:first_bot] for f in tone)  # the whole tone, before the bot spoke


async def test_listen_in_is_refused_without_login_csrf_or_live_stream(tmp_path: Path) -> None:
    async with media_server(tmp_path, "twilio") as media:
        record = await media.new_call()
        path = f"/console/api/calls/{record.call_id}/listen"
        async with httpx.AsyncClient(base_url=media.server.url, timeout=20) as http:
            anonymous = await http.post(path)
            assert anonymous.status_code == 401 and "log in" in anonymous.json()["error"]
            csrf = await logged_in(http, media.runtime)
            no_csrf = await http.post(path)
            assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["error"]
            other_site = await http.post(
                path, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
            )
            assert other_site.status_code == 403
            not_streaming = await http.post(path, headers={"X-CSRF-Token": csrf})
            assert not_streaming.status_code == 409
            assert "no live media stream" in not_streaming.json()["error"]
            unknown = await http.post(
                "/console/api/calls/nope/listen", headers={"X-CSRF-Token": csrf}
            )
            assert unknown.status_code == 404
            got = await http.get(path, headers={"X-CSRF-Token": csrf})
            assert got.status_code == 405
        assert media.runtime.media.get(record.call_id) is None


@pytest.mark.parametrize(
    ("caller", "bot"), [(None, None), (b"\x80" * FRAME_BYTES, None), (None, b"\x10" * FRAME_BYTES)]
)
def test_a_slot_with_one_side_is_that_side(caller: bytes | None, bot: bytes | None) -> None:
    assert _mixed(caller, bot) == (caller or bot or b"\xff" * FRAME_BYTES)


def test_both_sides_are_summed_and_clipped() -> None:
    loud = loud_frames(1)[0]
    mixed = ulaw_to_pcm16(_mixed(loud, loud)).astype(np.int32)
    doubled = np.clip(ulaw_to_pcm16(loud).astype(np.int32) * 2, -32768, 32767)
    assert np.abs(mixed - doubled).max() <= np.abs(doubled).max() * 0.07  # µ-law's own step


async def test_listen_in_from_the_page_in_chromium(tmp_path: Path, browser: Browser) -> None:
    """The button starts it (the server taps the stream, the page decodes what comes) and
    stops it (the tap goes); no CSP violation or script error on the way."""
    async with media_server(tmp_path, "twilio") as media:
        record = await media.new_call()
        carrier = media.client(record)
        await carrier.open()
        session = await media.runtime.media.wait_for(record.call_id, 5)
        assert session is not None
        context = await browser.new_context()
        page = await context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        async with httpx.AsyncClient(base_url=media.server.url, timeout=20) as http:
            await page.goto(media.server.url + await login_link(http, media.runtime))
        await page.goto(f"{media.server.url}/console/calls/{record.call_id}")
        button, note = page.locator("#listen"), page.locator("#listen-note")
        await button.click()
        await expect(note).to_have_text("Listening (caller and bot mixed)…")
        await expect(button).to_have_text("Stop listening")
        await wait_until(lambda: session.tap is not None)
        carrier.talk(loud_frames(25))
        await asyncio.wait_for(session.speak(GREETING, interruptible=False), 20)
        await expect(button).to_have_attribute("data-heard-ms", re.compile(r"[1-9][0-9]{3,}"))
        await button.click()
        await expect(button).to_have_text("Listen in")
        await wait_until(lambda: session.tap is None, what="the tap to go once the page stops")
        await context.close()
        await carrier.close()
    assert not problems, problems
