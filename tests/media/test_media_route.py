"""Audio through the media route over real sockets, for each carrier's protocol.

A call's greeting is synthesized (fake OpenAI speech), resampled, µ-law encoded and paced: it
must arrive as 160-byte frames every 20 ms. When the caller talks over it (the fake Realtime VAD
hears the carrier's inbound audio) the outbound frames must stop within 40 ms and a clear must be
sent; the manager hears what was actually played. Timing bounds allow only what a loaded machine
measurably took from this process (`StolenTime`).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import statistics
from pathlib import Path

import pytest

from tests.media.carrier import loud_frames
from tests.media.stack import CARRIERS, media_server
from tests.support import StolenTime, wait_until
from voice_call.audio.g711 import FRAME_BYTES
from voice_call.media.playback import PlaybackStatus
from voice_call.models import CallState, EventType
from voice_call.sim.openai import TranscriptionScript

GREETING = "Hello there. This is your appointment reminder for Tuesday at three."
LONG = " ".join(["This sentence goes on for a while so the caller can talk over it."] * 4)


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_greeting_arrives_as_160_byte_frames_every_20ms(tmp_path: Path, carrier: str) -> None:
    async with media_server(tmp_path, carrier) as media:
        record = await media.new_call()
        client = media.client(record)
        await client.open()
        session = await media.runtime.media.wait_for(record.call_id, 5)
        assert session is not None and len(media.fake.sessions) == 1  # STT opened once
        with StolenTime() as stolen:  # a loaded machine's delay is allowed, measured
            result = await asyncio.wait_for(session.speak(GREETING), 15)
        await client.close()
        await asyncio.sleep(0)
        events = await media.events(record.call_id)
    assert result.status is PlaybackStatus.PLAYED and result.heard_text == GREETING
    frames = client.media_frames()
    payloads = [base64.b64decode(f.frame["media"]["payload"]) for f in frames]
    assert len(payloads) > 80 and all(len(p) == FRAME_BYTES for p in payloads)
    # Keep-alive silence while the first sentence was synthesized, then the voice.
    assert payloads[0] == b"\xff" * FRAME_BYTES and any(p != payloads[0] for p in payloads)
    # Paced, not bursted: the typical gap is 20 ms, and over the whole greeting the frames kept
    # 20 ms each (a late frame is caught up on); the frames' own arrival times, with what a
    # loaded machine stole from this process (measured) as the only slack beyond 1 ms.
    gaps_ms = [(b.at - a.at) * 1000 for a, b in itertools.pairwise(frames)]
    assert 18 <= statistics.median(gaps_ms) <= 22, (sorted(gaps_ms)[:3], sorted(gaps_ms)[-5:])
    slack_ms = 1.0 + stolen.ms / len(gaps_ms)
    assert abs(statistics.mean(gaps_ms) - 20) < slack_ms, (statistics.mean(gaps_ms), stolen.ms)
    assert result.audio_ms == (len(payloads) - session.keepalive_frames) * 20
    marks = client.of("mark", "checkpoint")
    assert marks and marks[-1].frame.get("name", marks[-1].frame.get("mark", {}).get("name"))
    speech_requests = [r for r in media.fake.requests if r.path == "/v1/audio/speech"]
    assert [r.body["input"] for r in speech_requests] == [
        "Hello there.",
        "This is your appointment reminder for Tuesday at three.",
    ]
    kinds = [kind for kind, _ in events]
    assert "call.speaking" in kinds and "call.playback-ended" in kinds  # the manager logged them
    ended = [e for e in media.sent if e.type is EventType.PLAYBACK_ENDED]
    assert [(e.text, e.is_final, e.duration_ms) for e in ended] == [
        (GREETING, True, result.heard_ms)
    ]


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_barge_in_stops_outbound_frames_within_40ms_and_clears(
    tmp_path: Path, carrier: str
) -> None:
    script = TranscriptionScript(["wait a moment"], first_delta_ms=20, per_word_ms=10)
    async with media_server(tmp_path, carrier, transcription=script) as media:
        record = await media.new_call()
        client = media.client(record)
        await client.open()
        session = await media.runtime.media.wait_for(record.call_id, 5)
        assert session is not None
        playback = session.speak(LONG)
        await client.wait(lambda: len(client.media_frames()) >= 40)  # 800 ms in
        with StolenTime() as stolen:  # a loaded machine's delay is allowed, measured
            client.talk(loud_frames(25) + [b"\xff" * FRAME_BYTES] * 25)
            await client.wait(lambda: client.clears(), timeout=3)
        result = await asyncio.wait_for(playback, 3)
        await asyncio.sleep(0.2)  # anything still coming would arrive now
        frames_after = [f for f in client.media_frames() if f.at > client.clears()[0].at]
        await wait_until(lambda: any(e.type is EventType.SPEECH and e.is_final for e in media.sent))
        transcript = next(
            e.transcript for e in media.sent if e.type is EventType.SPEECH and e.is_final
        )
        await client.close()
        events = await media.events(record.call_id)
    assert client.first_loud_sent_at is not None
    clear_at = client.clears()[0].at
    last_frame_at = max(f.at for f in client.media_frames())
    assert (clear_at - client.first_loud_sent_at) * 1000 < 40 + stolen.ms, stolen.ms
    assert last_frame_at <= clear_at and frames_after == []
    assert result.status is PlaybackStatus.INTERRUPTED
    assert result.heard_text and LONG.startswith(result.heard_text) and result.heard_text != LONG
    assert 0 < result.heard_ms < result.audio_ms + 1
    assert transcript == "wait a moment"
    assert "call.playback-ended" in [kind for kind, _ in events]
    interrupted = [e for e in media.sent if e.type is EventType.PLAYBACK_ENDED]
    assert [(e.text, e.is_final) for e in interrupted] == [(result.heard_text, False)]


async def test_the_protected_greeting_ignores_speech_over_it(tmp_path: Path) -> None:
    script = TranscriptionScript(["echo of the greeting"], first_delta_ms=20, per_word_ms=10)
    async with media_server(tmp_path, "twilio", transcription=script) as media:
        record = await media.new_call()
        client = media.client(record)
        await client.open()
        session = await media.runtime.media.wait_for(record.call_id, 5)
        assert session is not None
        playback = session.speak(GREETING, interruptible=False)
        await client.wait(lambda: len(client.media_frames()) >= 20)
        client.talk(loud_frames(20))
        result = await asyncio.wait_for(playback, 15)
        await client.close()
        events = await media.events(record.call_id)
    assert result.status is PlaybackStatus.PLAYED and not client.clears()
    assert session.suppressed_speech >= 1
    assert not [data for kind, data in events if kind == "call.speech"]


async def test_queue_holds_eight_and_ending_waits_for_the_goodbye(tmp_path: Path) -> None:
    async with media_server(tmp_path, "telnyx") as media:
        record = await media.new_call()
        client = media.client(record)
        await client.open()
        session = await media.runtime.media.wait_for(record.call_id, 5)
        assert session is not None
        first = session.speak("One.")
        queued = [session.speak(f"Number {n}.") for n in range(8)]
        from voice_call.media.playback import PlaybackQueueFull

        with pytest.raises(PlaybackQueueFull, match="8 waiting"):
            session.speak("Too many.")
        session.clear()  # an explicit clear: everything goes
        assert (await first).status is PlaybackStatus.INTERRUPTED
        assert {(await q).status for q in queued} == {PlaybackStatus.SKIPPED}
        goodbye = session.speak("Thanks for your time. Goodbye!")
        await session.finish_playback(10)
        assert goodbye.done() and goodbye.result().status is PlaybackStatus.PLAYED
        await media.runtime.manager.end(record.call_id)
        await client.close()


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_dtmf_on_the_stream_reaches_the_manager(tmp_path: Path, carrier: str) -> None:
    async with media_server(tmp_path, carrier) as media:
        record = await media.new_call()
        client = media.client(record)
        await client.open()
        assert await media.runtime.media.wait_for(record.call_id, 5) is not None
        await client.send_json({"event": "dtmf", "dtmf": {"digit": "5"}})
        await wait_until(lambda: any(e.type is EventType.DTMF for e in media.sent))
        await client.close()
        events = await media.events(record.call_id)
    assert [e.digits for e in media.sent if e.type is EventType.DTMF] == ["5"]
    assert ("call.dtmf", {"digits": "5"}) in events


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_a_dropped_stream_ends_the_call_after_the_grace(tmp_path: Path, carrier: str) -> None:
    async with media_server(tmp_path, carrier) as media:
        record = await media.new_call()
        client = media.client(record)
        await client.open()
        assert await media.runtime.media.wait_for(record.call_id, 5) is not None
        loop = asyncio.get_running_loop()
        closed_at = loop.time()
        await client.close()  # no stop: the socket just went away
        await asyncio.sleep(0.05)
        alive = await media.runtime.store.get(record.call_id)
        within_grace = loop.time() - closed_at < 0.2  # not so on a badly loaded machine
        assert alive is not None and (not alive.terminal or not within_grace)
        rec = await media.ended(record.call_id)
    # A socket gone without `stop` is an error; Plivo has no stop frame, so its clean close is
    # how it ends a stream, and means the call is over.
    assert rec.end_reason is (CallState.HANGUP_USER if carrier == "plivo" else CallState.ERROR)


async def test_a_stream_that_reconnects_within_the_grace_keeps_the_call(tmp_path: Path) -> None:
    async with media_server(tmp_path, "twilio") as media:
        record = await media.new_call()
        first = media.client(record)
        await first.open()
        old = await media.runtime.media.wait_for(record.call_id, 5)
        await first.close()
        await asyncio.sleep(0.05)
        second = media.client(record)
        await second.open()
        await wait_until(lambda: media.runtime.media.get(record.call_id) not in (None, old))
        await asyncio.sleep(0.4)  # past the grace
        alive = await media.runtime.store.get(record.call_id)
        assert alive is not None and not alive.terminal
        await second.stop()
        rec = await media.ended(record.call_id)
    assert rec.end_reason is CallState.HANGUP_USER  # stop: the carrier ended it


async def test_prewarm_opens_stt_before_the_stream_and_the_stream_reuses_it(tmp_path: Path) -> None:
    async with media_server(tmp_path, "plivo") as media:
        record = await media.new_call()
        media.runtime.media.prewarm(record.call_id, record)
        await wait_until(lambda: bool(media.fake.sessions and media.fake.sessions[0].received))
        assert len(media.fake.sessions) == 1
        client = media.client(record)
        await client.open()
        session = await media.runtime.media.wait_for(record.call_id, 5)
        assert session is not None and session.stt.connected
        await asyncio.sleep(0.1)
        await client.close()
    assert len(media.fake.sessions) == 1  # the pre-warmed one carried the call


async def test_a_call_that_ends_before_its_stream_closes_the_warmed_stt(tmp_path: Path) -> None:
    async with media_server(tmp_path, "telnyx") as media:
        record = await media.new_call()
        media.runtime.media.prewarm(record.call_id, record)  # as at dial, while it rings
        await wait_until(lambda: bool(media.fake.sessions and media.fake.sessions[0].received))
        await media.runtime.manager.end(record.call_id)  # e.g. nobody answered
        await wait_until(lambda: media.fake.sessions[0].closed)
