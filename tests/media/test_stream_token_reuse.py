"""One stream per token, one stream per call, over real sockets (issue 15, item 3).

A token that opened a stream is spent, and a call whose stream is live refuses any other
socket (with that token or a fresh one): the live stream keeps the call's audio, never handed
to whoever else holds a token.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.media.carrier import FakeCarrier
from tests.media.stack import CARRIERS, MediaServer, media_server
from tests.support import wait_until
from voice_call.media.session import MediaSession

GREETING = " ".join(["The bot keeps talking to the callee on the one live stream."] * 3)


async def refused(client: FakeCarrier) -> tuple[int | None, str]:
    with contextlib.suppress(ConnectionClosed):  # the close may beat our first frames
        await client.open()
    await asyncio.wait_for(client.closed.wait(), 8)
    await client.close()
    return client.close_code, client.close_reason


async def live_stream(media: MediaServer) -> tuple[FakeCarrier, MediaSession, str]:
    record = await media.new_call()
    token = media.runtime.media.token(record.call_id)
    first = media.client(record, token)
    await first.open()
    session = await media.runtime.media.wait_for(record.call_id, 5)
    assert session is not None
    return first, session, token


async def still_hears_the_bot(
    media: MediaServer, first: FakeCarrier, session: MediaSession
) -> None:
    assert media.runtime.media.get(session.call_id) is session  # not replaced
    before = len(first.media_frames())
    playback = session.speak(GREETING)
    await first.wait(lambda: len(first.media_frames()) > before + 25)
    assert not first.closed.is_set()
    playback.cancel()


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_a_token_that_opened_a_stream_opens_no_second_one(
    tmp_path: Path, carrier: str
) -> None:
    async with media_server(tmp_path, carrier) as media:
        first, session, token = await live_stream(media)
        assert session.call_id
        stt_before = len(media.fake.sessions)
        intruder = FakeCarrier(carrier, media.url, first.call_id, token)
        code, reason = await refused(intruder)
        assert code == 1008 and reason in (
            "media stream already live for this call",
            "stream token already used",
        )
        assert len(media.fake.sessions) == stt_before  # no STT opened for it
        assert not intruder.media_frames()
        await still_hears_the_bot(media, first, session)
        await first.close()


async def test_a_spent_token_is_refused_after_its_stream_ended(tmp_path: Path) -> None:
    async with media_server(tmp_path, "telnyx", streaming={"dropGraceMs": 5000}) as media:
        first, session, token = await live_stream(media)
        await first.close()
        await wait_until(lambda: media.runtime.media.get(session.call_id) is None)
        again = FakeCarrier("telnyx", media.url, first.call_id, token)
        assert await refused(again) == (1008, "stream token already used")


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_a_fresh_token_for_a_call_whose_stream_is_live_is_refused(
    tmp_path: Path, carrier: str
) -> None:
    async with media_server(tmp_path, carrier) as media:
        first, session, _ = await live_stream(media)
        fresh = media.runtime.media.token(session.call_id)
        intruder = FakeCarrier(carrier, media.url, first.call_id, fresh)
        assert await refused(intruder) == (1008, "media stream already live for this call")
        await still_hears_the_bot(media, first, session)
        await first.close()


async def test_a_retried_answer_hands_out_the_same_token_and_warms_stt_once(
    tmp_path: Path,
) -> None:
    async with media_server(tmp_path, "plivo") as media:
        record = await media.new_call()
        registry = media.runtime.media
        base = media.server.url + media.runtime.config.serve.path
        url, token = registry.answer_stream(base, record.call_id, record)
        client = FakeCarrier("plivo", media.url, record.provider_call_id or "", token)
        await client.open()
        assert await registry.wait_for(record.call_id, 5) is not None
        assert registry.answer_stream(base, record.call_id, record) == (url, token)
        await asyncio.sleep(0.2)
        assert len(media.fake.sessions) == 1  # the stream's STT is the only one
        await client.close()
