"""Who may open a media stream, and the limits on those who may (real sockets, each carrier)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.media.carrier import FakeCarrier
from tests.media.stack import CARRIERS, MediaServer, media_server
from tests.support import wait_until
from voice_call.server.media import MediaLimits


async def refused(client: FakeCarrier, **open_args: bool) -> tuple[int | None, str]:
    with contextlib.suppress(ConnectionClosed):  # the close may beat our first frames
        await client.open(**open_args)
    await asyncio.wait_for(client.closed.wait(), 8)
    await client.close()
    return client.close_code, client.close_reason


def tampered(token: str) -> str:
    head, signature = token.rsplit(".", 1)
    return f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_bad_tokens_are_refused_with_1008_and_no_stt_session(
    tmp_path: Path, carrier: str
) -> None:
    async with media_server(tmp_path, carrier) as media:
        call = await media.new_call()
        other = await media.new_call()
        tokens = media.runtime.media.tokens
        cases = {
            "missing stream token": None,
            "invalid stream token": tampered(tokens.mint(call.call_id)),
            "malformed stream token": "not-a-token",
            "stream token expired": tokens.mint(call.call_id, ttl_s=0),
            "stream token is for another call": tokens.mint(other.call_id),
            "unknown call": tokens.mint("00000000-0000-0000-0000-000000000000"),
        }
        for reason, token in cases.items():
            client = media.client(call, token)
            assert await refused(client) == (1008, reason), reason
        await media.runtime.manager.end(other.call_id)
        ended = media.client(other)
        assert await refused(ended) == (1008, "call has ended")
        assert media.fake.sessions == []  # not one STT session was opened
        assert media.runtime.media.live == 0 and media.route.open == 0


async def test_twilio_token_must_be_in_custom_parameters_not_the_query(tmp_path: Path) -> None:
    async with media_server(tmp_path, "twilio") as media:
        call = await media.new_call()
        token = media.runtime.media.token(call.call_id)
        client = media.client(call, None)
        client.url += f"?token={token}"  # Twilio drops query strings; we do not read them
        assert await refused(client) == (1008, "missing stream token")


async def test_a_second_start_and_a_bad_media_format_are_refused(tmp_path: Path) -> None:
    async with media_server(tmp_path, "telnyx") as media:
        call = await media.new_call()
        client = media.client(call)
        await client.open()
        assert await media.runtime.media.wait_for(call.call_id, 5) is not None
        await client.send_json(client.start_frame())
        await asyncio.wait_for(client.closed.wait(), 5)
        assert (client.close_code, client.close_reason) == (1008, "duplicate start")
        await client.close()
        pcma = media.client(call, media_format={"encoding": "PCMA", "sample_rate": 8000})
        code, reason = await refused(pcma)
        assert code == 1008 and reason.startswith("unsupported media format pcma/8000")


async def test_no_start_within_the_timeout_is_1008(tmp_path: Path) -> None:
    limits = MediaLimits(start_timeout_s=0.3)
    async with media_server(tmp_path, "plivo", limits=limits) as media:
        call = await media.new_call()
        client = media.client(call)
        started = asyncio.get_running_loop().time()
        assert await refused(client, start=False, pump=False) == (1008, "start timeout")
        assert 0.25 < asyncio.get_running_loop().time() - started < 2
        assert media.route.pending == 0 and media.route.pending_by_client == {}


async def pending_sockets(media: MediaServer, count: int) -> list[FakeCarrier]:
    call = await media.new_call()
    sockets = [media.client(call) for _ in range(count)]
    for client in sockets:
        await client.open(start=False, pump=False)
    await wait_until(lambda: media.route.pending == count)
    return sockets


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        (MediaLimits(max_pending_per_client=2), "too many media streams waiting to start from"),
        (MediaLimits(max_pending=2), "too many media streams waiting to start"),
    ],
)
async def test_pending_sockets_are_capped_with_1013(
    tmp_path: Path, limits: MediaLimits, reason: str
) -> None:
    async with media_server(tmp_path, "twilio", limits=limits) as media:
        waiting = await pending_sockets(media, 2)
        extra = media.client(await media.new_call())
        code, text = await refused(extra, start=False, pump=False)
        assert code == 1013 and text.startswith(reason)
        # a pending socket that starts properly frees its slot
        await waiting[0].send_json(waiting[0].start_frame())
        await wait_until(lambda: media.route.pending == 1)
        for client in waiting:
            await client.close()


async def test_max_connections_refuses_the_upgrade_with_503(tmp_path: Path) -> None:
    async with media_server(tmp_path, "twilio", limits=MediaLimits(max_connections=2)) as media:
        sockets = await pending_sockets(media, 2)
        with pytest.raises(InvalidStatus) as refused_upgrade:
            await connect(media.url, proxy=None)
        assert refused_upgrade.value.response.status_code == 503
        assert b"too many media streams" in refused_upgrade.value.response.body
        for client in sockets:
            await client.close()


async def test_frames_over_64_kib_close_the_stream(tmp_path: Path) -> None:
    async with media_server(tmp_path, "twilio") as media:
        call = await media.new_call()
        client = media.client(call)
        await client.open()
        assert await media.runtime.media.wait_for(call.call_id, 5) is not None
        big = {"event": "media", "media": {"payload": "A" * (64 * 1024)}}
        await client.send_text(json.dumps(big))
        await asyncio.wait_for(client.closed.wait(), 5)
        await client.close()
    assert (client.close_code, client.close_reason) == (1009, "frame larger than 65536 bytes")


async def test_stt_that_cannot_connect_closes_with_1011(tmp_path: Path) -> None:
    streaming = {
        "enabled": True,
        "providers": {"openai": {"url": "ws://127.0.0.1:9/v1/realtime?intent=transcription"}},
    }
    async with media_server(tmp_path, "telnyx", streaming=streaming) as media:
        call = await media.new_call()
        code, reason = await refused(media.client(call))
    assert (code, reason) == (1011, "speech-to-text unavailable")


async def test_malformed_frames_are_dropped_not_fatal(tmp_path: Path) -> None:
    async with media_server(tmp_path, "plivo") as media:
        call = await media.new_call()
        client = media.client(call)
        await client.open()
        session = await media.runtime.media.wait_for(call.call_id, 5)
        assert session is not None
        for junk in ("{", "[]", '{"event": "media", "media": {"payload": "***"}}', "\x00"):
            await client.send_text(junk)
        await asyncio.sleep(0.1)
        assert not client.closed.is_set() and session.inbound_frames > 0
        await client.close()


async def test_behind_a_trusted_proxy_pending_sockets_count_per_forwarded_client(
    tmp_path: Path,
) -> None:
    security = {"trustForwardingHeaders": True, "trustedProxyIPs": ["127.0.0.1"]}
    limits = MediaLimits(max_pending_per_client=2)
    async with media_server(tmp_path, "twilio", limits=limits, webhookSecurity=security) as media:
        call = await media.new_call()

        def behind(client: str) -> FakeCarrier:
            carrier = media.client(call)
            carrier.headers = {"X-Forwarded-For": client}
            return carrier

        first = [behind("203.0.113.1") for _ in range(2)]
        for client in first:
            await client.open(start=False, pump=False)
        other = behind("203.0.113.2")  # another carrier IP: its own two slots
        await other.open(start=False, pump=False)
        await wait_until(lambda: media.route.pending == 3)
        third = behind("203.0.113.1")
        code, text = await refused(third, start=False, pump=False)
        assert code == 1013 and text.startswith("too many media streams waiting to start from")
        assert media.route.pending_by_client == {"203.0.113.1": 2, "203.0.113.2": 1}
        for client in [*first, other]:
            await client.close()
