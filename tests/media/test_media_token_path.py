"""The media token path in the registry: how long minted tokens live, the answer stream handed
out once per call (reused while valid, re-minted near expiry, the oldest forgotten first),
spending a token through the event sink, and holding a call while its stream is admitted;
over real sockets, a refused token never holds the call, a store that cannot record the spend
closes 1011, and an answer token naming the carrier's id takes the STT warmed under it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.media.carrier import FakeCarrier
from tests.media.stack import media_server, registry
from tests.support import wait_until
from voice_call.media import registry as registry_module
from voice_call.media.registry import MediaSessions
from voice_call.models import CallEvent, EventType
from voice_call.security.stream_tokens import ANSWER, spent_key

WEBHOOK = "https://example.ngrok.app/voice/webhook"


def _expiry(token: str) -> int:
    return int(token.split(".")[1])


def _frozen_clock(media: MediaSessions, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Wall time for the registry and its token signer, moved by the test."""
    now = [1_800_000_000.0]
    monkeypatch.setattr(registry_module.time, "time", lambda: now[0])
    media.tokens._now = lambda: now[0]
    return now


def test_a_token_lives_the_configured_ttl_or_longer_when_asked() -> None:
    media, _, _ = registry(tokenTtlSeconds=30)
    now = time.time()
    assert abs(_expiry(media.token("call-1")) - (now + 30)) <= 2
    assert abs(_expiry(media.token("call-1", 600)) - (now + 600)) <= 2
    assert abs(_expiry(media.token("call-1", 5)) - (now + 30)) <= 2  # never shorter
    check = media.tokens.check(media.token("call-1", grant="g1"), "call-1")
    assert check.ok and check.grant == "g1"


async def test_the_answer_stream_is_minted_once_and_reused_while_valid() -> None:
    media, speech, _ = registry(tokenTtlSeconds=60)
    url, token = media.answer_stream(WEBHOOK, "call-1", min_ttl_s=120)
    assert url.startswith("wss://example.ngrok.app/voice/stream?token=")
    check = media.tokens.check(token, "call-1")
    assert check.ok and check.grant == ANSWER
    assert abs(_expiry(token) - (time.time() + 120)) <= 2
    assert media.answer_stream(WEBHOOK, "call-1") == (url, token)
    assert len(speech.stts) == 1  # warmed once
    await media.close()


async def test_an_answer_token_near_expiry_is_minted_anew(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    media, speech, _ = registry(tokenTtlSeconds=60)
    now = _frozen_clock(media, monkeypatch)
    _, token = media.answer_stream(WEBHOOK, "call-1")
    now[0] += 54.0  # 6 s left: still handed out again
    assert media.answer_stream(WEBHOOK, "call-1")[1] == token
    now[0] += 1.0  # 5 s left: too close to expiry for a carrier to open it
    _, fresh = media.answer_stream(WEBHOOK, "call-1")
    assert fresh != token and _expiry(fresh) == int(now[0]) + 60
    assert len(speech.stts) == 1  # a re-mint does not warm again
    await media.close()


async def test_the_oldest_answer_stream_is_forgotten_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry_module, "MAX_ANSWERS", 2)
    media, _, _ = registry(tokenTtlSeconds=60)
    now = _frozen_clock(media, monkeypatch)
    first = {call: media.answer_stream(WEBHOOK, call) for call in ("a", "b", "c")}
    now[0] += 1.0  # a token minted anew from here on has a later expiry
    assert media.answer_stream(WEBHOOK, "c") == first["c"]
    assert media.answer_stream(WEBHOOK, "b") == first["b"]
    assert media.answer_stream(WEBHOOK, "a") != first["a"]  # forgotten: minted anew
    await media.close()


async def test_a_retried_answer_is_remembered_as_the_newest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry_module, "MAX_ANSWERS", 2)
    media, _, _ = registry(tokenTtlSeconds=60)
    now = _frozen_clock(media, monkeypatch)
    media.answer_stream(WEBHOOK, "a")
    media.answer_stream(WEBHOOK, "b")
    now[0] += 58.0
    again = media.answer_stream(WEBHOOK, "a")  # re-minted near expiry: now the newest
    media.answer_stream(WEBHOOK, "c")  # forgets b, not a
    now[0] += 1.0
    assert media.answer_stream(WEBHOOK, "a") == again
    await media.close()


async def test_spending_a_grant_sends_its_key_and_reads_the_verdict() -> None:
    media, _, _ = registry()
    sent: list[CallEvent] = []
    verdicts = iter(["applied", "duplicate"])

    async def sink(event: CallEvent) -> str:
        sent.append(event)
        return next(verdicts)

    media.sink = sink
    assert await media.spend("call-1", "g1") is True
    assert await media.spend("call-1", "g1") is False
    assert [(e.type, e.call_id, e.dedupe_key) for e in sent] == [
        (EventType.STREAM_STARTED, "call-1", spent_key("call-1", "g1"))
    ] * 2
    await media.close()


async def test_a_call_is_held_while_its_stream_is_admitted() -> None:
    media, _, _ = registry()
    assert media.reserve("call-1")
    assert not media.reserve("call-1")
    assert media.reserve("call-2")
    media.release("call-1")
    assert media.reserve("call-1")
    await media.close()


async def _refused(client: FakeCarrier) -> tuple[int | None, str]:
    with contextlib.suppress(ConnectionClosed):  # the close may beat our first frames
        await client.open()
    await asyncio.wait_for(client.closed.wait(), 8)
    await client.close()
    return client.close_code, client.close_reason


async def test_a_refused_token_does_not_hold_the_call_and_a_fresh_one_opens(
    tmp_path: Path,
) -> None:
    async with media_server(tmp_path, "telnyx", streaming={"dropGraceMs": 5000}) as media:
        record = await media.new_call()
        token = media.runtime.media.token(record.call_id)
        first = media.client(record, token)
        await first.open()
        assert await media.runtime.media.wait_for(record.call_id, 5) is not None
        await first.close()
        await wait_until(lambda: media.runtime.media.get(record.call_id) is None)
        assert await _refused(media.client(record, token)) == (1008, "stream token already used")
        second = media.client(record)  # a fresh token: its own grant, and the call is free
        await second.open()
        assert await media.runtime.media.wait_for(record.call_id, 5) is not None
        await second.close()


async def test_a_token_that_cannot_be_spent_now_closes_1011(tmp_path: Path) -> None:
    async with media_server(tmp_path, "telnyx") as media:
        record = await media.new_call()

        async def store_down(call_id: str, grant: str) -> bool:
            raise RuntimeError("store down")

        media.runtime.media.spend = store_down  # type: ignore[method-assign]
        code, reason = await _refused(media.client(record))
        assert (code, reason) == (1011, "could not record the stream now; retry")
        assert media.fake.sessions == []


async def test_an_answer_token_naming_the_carriers_id_takes_the_stt_warmed_for_it(
    tmp_path: Path,
) -> None:
    async with media_server(tmp_path, "plivo") as media:
        record = await media.new_call()
        carrier_id = record.provider_call_id or ""
        base = media.server.url + media.runtime.config.serve.path
        _, token = media.runtime.media.answer_stream(base, carrier_id, record)
        await wait_until(lambda: media.fake.sessions, what="the pre-warmed STT")
        client = FakeCarrier("plivo", media.url, carrier_id, token)
        await client.open()
        assert await media.runtime.media.wait_for(record.call_id, 5) is not None
        assert len(media.fake.sessions) == 1  # the warm one, not a second
        await client.close()


async def test_a_stream_may_name_an_earlier_carrier_id_of_the_call(tmp_path: Path) -> None:
    async with media_server(tmp_path, "plivo") as media:
        record = await media.new_call()
        stored = await media.runtime.store.get(record.call_id)
        assert stored is not None
        stored.metadata["providerCallIdAliases"] = ["earlier-id"]  # Plivo: RequestUUID
        await media.runtime.store.save(stored)
        token = media.runtime.media.token(record.call_id)
        client = FakeCarrier("plivo", media.url, "earlier-id", token)
        await client.open()
        assert await media.runtime.media.wait_for(record.call_id, 5) is not None
        await client.close()
        stranger = FakeCarrier("plivo", media.url, "u3", media.runtime.media.token(record.call_id))
        assert await _refused(stranger) == (1008, "stream token is for another call")


async def test_the_frames_we_send_name_the_admitted_stream(tmp_path: Path) -> None:
    async with media_server(tmp_path, "twilio") as media:
        record = await media.new_call()
        client = media.client(record)
        await client.open()
        session = await media.runtime.media.wait_for(record.call_id, 5)
        assert session is not None
        playback = session.speak("Hello there, this is the bot speaking.")
        await client.wait(lambda: client.media_frames())
        frames = [r.frame for r in client.media_frames()]
        assert all(frame["streamSid"] == client.stream_id for frame in frames)
        playback.cancel()
        await client.close()
