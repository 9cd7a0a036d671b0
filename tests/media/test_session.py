"""MediaSession and its parts without sockets: fake STT, fake TTS, a recording outbox."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncGenerator

import pytest

from tests.media.stack import SessionHarness
from tests.support import StolenTime, wait_until
from voice_call.audio.g711 import FRAME_BYTES
from voice_call.media import session as session_module
from voice_call.media.lateness import LatenessStats
from voice_call.media.outbox import Outbox
from voice_call.media.playback import (
    PlaybackJob,
    PlaybackQueueFull,
    PlaybackStatus,
    SessionClosed,
)
from voice_call.media.stream_protocols import Dtmf, MarkAck, Media
from voice_call.models import EventType
from voice_call.speech.stack import Voice
from voice_call.speech.tts.base import TtsAudio, TtsError
from voice_call.speech.tts.fake import FakeTts

SILENT = base64.b64encode(b"\xff" * FRAME_BYTES).decode()

# --------------------------------------------------------------------------- outbox


async def test_outbox_writes_in_order_and_drops_media_on_request() -> None:
    written: list[str] = []
    gate = asyncio.Event()

    async def send(text: str) -> None:
        await gate.wait()
        written.append(text)

    outbox = Outbox(send, stats=LatenessStats())
    writer = asyncio.create_task(outbox.run())
    loop = asyncio.get_running_loop()
    for n in range(3):
        outbox.put(f"media{n}", due=loop.time(), media=True)
    outbox.put("mark")
    outbox.put("media3", media=True)
    await asyncio.sleep(0)  # media0 is in the (blocked) send
    assert outbox.drop_media() == 3 and outbox.buffered == len("media0") + len("mark")
    outbox.put("clear")
    gate.set()
    await wait_until(lambda: len(written) == 3)
    assert written == ["media0", "mark", "clear"]
    assert outbox.stats is not None and outbox.stats.count == 1
    outbox.close()
    await writer


async def test_outbox_sends_inline_when_the_socket_takes_it_at_once() -> None:
    written: list[str] = []
    pauses = iter([True, False, False])

    async def send(text: str) -> None:
        if next(pauses, False):
            await asyncio.sleep(0)  # the socket's buffer was full this once
        written.append(text)

    outbox = Outbox(send)
    outbox.put("a")  # suspends: the writer task finishes it
    outbox.put("b")  # queued behind it, in order
    assert written == [] and outbox.buffered == 2
    writer = asyncio.create_task(outbox.run())
    await wait_until(lambda: written == ["a", "b"])
    await wait_until(lambda: not outbox._busy)
    outbox.put("c")  # nothing queued, socket writable: written before `put` returns
    assert written == ["a", "b", "c"] and outbox.sent == 3 and outbox.buffered == 0
    outbox.close()
    await writer


async def test_outbox_over_its_byte_cap_reports_once_and_refuses() -> None:
    overflows: list[int] = []

    async def never(text: str) -> None:
        await asyncio.Event().wait()

    outbox = Outbox(never, limit_bytes=100, on_overflow=lambda: overflows.append(1))
    assert all(outbox.put("x" * 30) for _ in range(3))
    assert not outbox.put("x" * 30) and not outbox.put("y")
    assert overflows == [1] and outbox.buffered == 90


async def test_outbox_sends_a_frame_and_its_mark_in_one_write_when_the_lane_takes_it() -> None:
    writes: list[tuple[str | bytes, ...]] = []

    def try_send(*texts: str | bytes) -> bool:
        writes.append(texts)
        return True

    async def send(text: str) -> None:
        raise AssertionError("the direct lane took everything")

    stats = LatenessStats()
    outbox = Outbox(send, try_send=try_send, stats=stats)
    assert outbox.put_pair(b'{"m":1}', '{"mark":1}', due=asyncio.get_running_loop().time())
    assert writes == [(b'{"m":1}', '{"mark":1}')]
    assert outbox.sent == 2 and stats.count == 1 and outbox.buffered == 0


async def test_outbox_pair_behind_a_busy_send_queues_both_and_a_barge_in_keeps_the_mark() -> None:
    written: list[str] = []
    gate = asyncio.Event()

    async def send(text: str) -> None:
        await gate.wait()
        written.append(text)

    outbox = Outbox(send, try_send=lambda *texts: False)
    writer = asyncio.create_task(outbox.run())
    outbox.put("first")  # the socket is slow: this send suspends
    assert outbox.put_pair(b"media", "mark", due=asyncio.get_running_loop().time())
    assert outbox.drop_media() == 1  # a barge-in: the queued frame goes, its mark stays
    gate.set()
    await wait_until(lambda: len(written) == 2)
    assert written == ["first", "mark"]  # bytes reach the ASGI send as text
    outbox.close()
    await writer


async def test_a_frame_and_the_mark_after_it_leave_the_session_in_one_write() -> None:
    writes: list[list[dict[str, object]]] = []

    def try_send(*texts: str | bytes) -> bool:
        writes.append([json.loads(text) for text in texts])
        return True

    async def send(text: str) -> None:
        raise AssertionError("the direct lane took everything")

    h = SessionHarness()
    h.session.outbox = Outbox(send, try_send=try_send)
    h.session.play(b"\x01" * FRAME_BYTES * 12, "tones")
    await wait_until(lambda: h.session.audio_frames == 12)
    events = [[frame["event"] for frame in write] for write in writes]
    assert events[:12] == [["media"]] * 9 + [["media", "mark"]] + [["media"]] * 2
    assert writes[9][1]["mark"] == {"name": "p1.10"}
    await h.session.close()


# --------------------------------------------------------------------------- session


async def test_a_job_plays_with_keepalive_silence_marks_and_an_acknowledged_end() -> None:
    h = SessionHarness()
    playback = h.session.speak("Hello there. Bye now.")
    await h.wire.wait(lambda: any(m["mark"]["name"].endswith(".end") for m in h.wire.of("mark")))
    assert not playback.done()  # waiting for the carrier to say it played
    h.ack_marks()
    result = await asyncio.wait_for(playback, 1)
    await h.close()
    media = [f["media"]["payload"] for f in h.wire.of("media")]
    assert media[0] == SILENT  # synthesis had not produced audio yet: the line stays warm
    assert (
        h.session.keepalive_frames >= 1
        and h.session.audio_frames == len(media) - h.session.keepalive_frames
    )
    assert result.status is PlaybackStatus.PLAYED and result.heard_text == "Hello there. Bye now."
    assert result.audio_ms == h.session.audio_frames * 20 == result.heard_ms
    names = [m["mark"]["name"] for m in h.wire.of("mark")]
    assert names[:-1] == [f"p1.{n}" for n in range(10, h.session.audio_frames, 10)]
    assert h.tts.requests == ["Hello there.", "Bye now."]
    assert h.kinds() == [EventType.SPEAKING, EventType.PLAYBACK_ENDED]
    assert h.events[1].text == "Hello there. Bye now." and h.events[1].is_final


async def test_failure_before_any_audio_lets_the_provider_fall_back() -> None:
    h = SessionHarness(FakeTts({"error": "voice not found", "firstChunkMs": 0}))
    result = await asyncio.wait_for(h.session.speak("Hi."), 2)
    await h.close()
    assert result.status is PlaybackStatus.FAILED and not result.audio_sent
    assert result.error == "voice not found"
    assert EventType.PLAYBACK_ENDED not in h.kinds()


class BreaksMidway:
    name = "breaks"

    async def synthesize(self, text: str) -> AsyncGenerator[TtsAudio, None]:
        yield TtsAudio(b"\x00\x10" * 4000, 8000)  # 0.5 s of audio
        raise TtsError("connection reset")

    async def warm(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_failure_after_audio_went_out_is_reported_as_such() -> None:
    h = SessionHarness(BreaksMidway())
    playback = h.session.speak("One. Two.")
    await h.wire.wait(lambda: any(m["mark"]["name"].endswith(".end") for m in h.wire.of("mark")))
    h.ack_marks()
    result = await asyncio.wait_for(playback, 2)
    await h.close()
    assert result.status is PlaybackStatus.FAILED and result.audio_sent  # no native fallback
    assert result.error == "connection reset" and result.audio_ms == 500


async def test_synthesis_timeout() -> None:
    h = SessionHarness(FakeTts({"firstChunkMs": 400}), timeout_s=0.1)
    result = await asyncio.wait_for(h.session.speak("Slow."), 2)
    await h.close()
    assert result.status is PlaybackStatus.FAILED
    assert result.error == "speech synthesis took longer than 0.1 s"
    assert h.wire.of("media") and all(f["media"]["payload"] == SILENT for f in h.wire.of("media"))


async def test_a_lost_end_mark_does_not_hang_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "ACK_GRACE_S", 0.05)
    h = SessionHarness()
    result = await asyncio.wait_for(h.session.speak("No echo."), 3)
    await h.close()
    assert result.status is PlaybackStatus.PLAYED


async def test_barge_in_clears_drops_queued_and_ignores_stale_marks() -> None:
    h = SessionHarness(FakeTts({"msPerChar": 40, "firstChunkMs": 0, "chunkMs": 40}))
    first = h.session.speak("A fairly long first sentence here. And a second one after it.")
    queued = h.session.speak("Queued, never heard.")
    await h.wire.wait(lambda: len(h.wire.of("mark")) >= 3)
    for mark in h.wire.of("mark")[:2]:
        h.session.handle(MarkAck(mark["mark"]["name"]))  # 400 ms heard
    h.stt.speech_started()
    await h.wire.wait(lambda: h.wire.of("clear"))
    sent_before_clear = len(h.wire.of("media"))
    h.ack_marks()  # Twilio returns cleared marks at once: they mean nothing
    result, skipped = await asyncio.wait_for(asyncio.gather(first, queued), 1)
    await asyncio.sleep(0.1)
    assert len(h.wire.of("media")) == sent_before_clear  # nothing after the clear
    assert h.wire.frames[-1]["event"] in ("clear", "mark")
    assert result.status is PlaybackStatus.INTERRUPTED and result.heard_ms == 400
    assert result.heard_text == "A"  # 400 ms of a 1.4 s sentence of six words
    assert skipped.status is PlaybackStatus.SKIPPED and not skipped.audio_sent
    assert h.session.barge_ins == 1
    ended = [e for e in h.events if e.type is EventType.PLAYBACK_ENDED]
    assert [(e.text, e.is_final, e.duration_ms) for e in ended] == [("A", False, 400)]
    h.stt.final("hold on")
    await h.close()
    assert h.events[-1].type is EventType.SPEECH and h.events[-1].transcript == "hold on"
    # speech start is told at once (an empty partial): the manager drops a reply still
    # being generated, before any of its next sentences can be queued over the caller
    speech = [(e.transcript, e.is_final) for e in h.events if e.type is EventType.SPEECH]
    assert speech == [("", False), ("hold on", True)]


async def test_protected_job_ignores_speech_and_its_transcripts() -> None:
    h = SessionHarness()
    playback = h.session.speak("Welcome to the demo.", interruptible=False)
    await h.wire.wait(lambda: len(h.wire.of("media")) >= 3)
    h.stt.speech_started()
    h.stt.partial("welcome")
    h.stt.final("welcome to the demo")
    await h.wire.wait(lambda: any(m["mark"]["name"].endswith(".end") for m in h.wire.of("mark")))
    h.ack_marks()
    result = await asyncio.wait_for(playback, 2)
    h.stt.final("yes hello")  # after the greeting: heard normally
    await h.close()
    assert result.status is PlaybackStatus.PLAYED and not h.wire.of("clear")
    assert h.session.suppressed_speech == 2
    speech = [e for e in h.events if e.type is EventType.SPEECH]
    assert [(e.transcript, e.is_final) for e in speech] == [("yes hello", True)]


async def test_partials_finals_dtmf_and_tracks() -> None:
    h = SessionHarness()
    h.session.handle(Media(b"\x01" * 160))
    h.session.handle(Media(b"\x02" * 160, track="outbound"))  # our own audio echoed back
    await h.stt.connect()
    h.session.handle(Media(b"\x03" * 160))
    h.stt.partial("I need")
    h.stt.final("I need help")
    h.session.handle(Dtmf("9"))
    await h.close()
    assert h.stt.frames == 1  # before connect: dropped; outbound track: never forwarded
    assert h.session.inbound_frames == 2
    assert [(e.type, e.transcript, e.is_final, e.digits) for e in h.events] == [
        (EventType.SPEECH, "I need", False, None),
        (EventType.SPEECH, "I need help", True, None),
        (EventType.DTMF, None, True, "9"),
    ]


async def test_queue_limit_close_and_fatal_stt() -> None:
    h = SessionHarness(FakeTts({"firstChunkMs": 1000}))
    jobs = [h.session.speak(f"Line {n}.") for n in range(9)]  # one playing, eight waiting
    with pytest.raises(PlaybackQueueFull):
        h.session.speak("One more.")
    h.session.on_error("gone", fatal=True)
    assert h.fatal == [(1011, "speech-to-text unavailable")]
    await h.close()
    statuses = [j.result().status for j in jobs]
    assert statuses == [PlaybackStatus.INTERRUPTED] + [PlaybackStatus.SKIPPED] * 8
    with pytest.raises(SessionClosed):
        h.session.speak("Too late.")
    assert h.stt.closed


async def test_heard_text_follows_sentence_boundaries() -> None:
    job = PlaybackJob(
        1, "One two three. Four five six seven.", Voice(FakeTts(), 1.0), interruptible=True
    )
    job.boundaries = [1600, 4800]  # 10 frames, then 20 more
    for frames, expected in [
        (0, ""),
        (5, "One"),
        (10, "One two three."),
        (20, "One two three. Four five"),
        (30, "One two three. Four five six seven."),
    ]:
        job.heard_frames = frames
        assert job.heard_text() == expected, frames
    job.boundaries = [1600]  # the second sentence is still being synthesized
    job.partial_bytes = 800
    job.heard_frames = 15  # 800 bytes into it, of an estimated ~3200
    assert job.heard_text() == "One two three. Four"


async def test_prerecorded_audio_plays_after_speech_unannounced_and_uninterrupted() -> None:
    from voice_call.audio.dtmf import dtmf_ulaw, goertzel_digits

    h = SessionHarness()
    said = h.session.speak("One moment.")
    tones = h.session.play(dtmf_ulaw("12#"), "[DTMF 12#]")
    await h.wire.wait(lambda: len(h.wire.of("mark")) >= 2)
    h.stt.speech_started()  # an IVR talking over its menu: not a barge-in of the tones
    while not tones.done():
        h.ack_marks()
        await asyncio.sleep(0.05)
    result = await tones
    await asyncio.wait_for(said, 1)
    await h.close()
    assert result.status is PlaybackStatus.PLAYED and result.audio_ms == 600
    audio = b"".join(base64.b64decode(f["media"]["payload"]) for f in h.wire.of("media"))
    assert goertzel_digits(audio) == "12#"
    assert not h.wire.of("clear")
    # only the spoken line is reported; the tones are not something the bot said
    assert [e.type for e in h.events] == [EventType.SPEAKING, EventType.PLAYBACK_ENDED]
    assert h.events[1].text == "One moment."


async def test_turn_figures_ride_on_the_speech_and_speaking_events() -> None:
    h = SessionHarness()
    h.stt.speech_stopped(ago_s=0.25)  # the caller's last word, by the STT's VAD
    h.stt.final("book it")
    playback = h.session.speak("Done.")
    await h.wire.wait(lambda: any(m["mark"]["name"].endswith(".end") for m in h.wire.of("mark")))
    h.ack_marks()
    await asyncio.wait_for(playback, 1)
    await h.close()
    speech = next(e for e in h.events if e.type is EventType.SPEECH)
    assert speech.endpointing_ms is not None and 250 <= speech.endpointing_ms < 400
    speaking = next(e for e in h.events if e.type is EventType.SPEAKING)
    # FakeTts: first chunk after 30 ms
    assert speaking.tts_first_byte_ms is not None and 30 <= speaking.tts_first_byte_ms < 300


async def test_a_long_line_is_converted_as_it_plays_and_never_times_out_for_that() -> None:
    from voice_call.media.playback import AHEAD_FRAMES

    # 40 ms a character: this line is ~2.1 s of audio, produced all at once by the fake TTS,
    # and the synthesis timeout (1 s) is shorter than its playback
    h = SessionHarness(FakeTts({"msPerChar": 40, "firstChunkMs": 0, "chunkMs": 200}), timeout_s=1.0)
    text = "This one sentence goes on for a good few seconds of audio."
    playback = h.session.speak(text)
    most_ahead = 0
    while not any(m["mark"]["name"].endswith(".end") for m in h.wire.of("mark")):
        job = h.session._current
        if job is not None:
            most_ahead = max(most_ahead, len(job.frames))
        await asyncio.sleep(0.01)
    h.ack_marks()
    result = await asyncio.wait_for(playback, 2)
    await h.close()
    assert result.status is PlaybackStatus.PLAYED and result.error is None
    assert result.audio_ms >= 2000
    assert 0 < most_ahead <= AHEAD_FRAMES + 10  # one 200 ms TTS chunk past the mark, at most


async def test_the_first_audio_leaves_when_it_is_ready_not_at_the_next_tick() -> None:
    h = SessionHarness(FakeTts({"msPerChar": 20, "firstChunkMs": 30, "chunkMs": 40}))
    sent_at: list[float] = []
    send = h.wire._send

    async def timed(text: str) -> None:
        sent_at.append(time.monotonic())
        await send(text)

    h.wire.outbox._send = timed  # type: ignore[method-assign]
    with StolenTime() as stolen:  # a loaded machine's delay is allowed, measured
        asked = time.monotonic()
        playback = h.session.speak("Hi.")
        await h.wire.wait(
            lambda: any(m["mark"]["name"].endswith(".end") for m in h.wire.of("mark"))
        )
    h.ack_marks()
    await asyncio.wait_for(playback, 1)
    await h.close()
    first = next(
        i
        for i, f in enumerate(h.wire.frames)
        if f.get("media", {}).get("payload", SILENT) != SILENT
    )
    job_first_byte_ms = next(e for e in h.events if e.type is EventType.SPEAKING).tts_first_byte_ms
    assert job_first_byte_ms is not None
    # audio ready ~30 ms in, between the keep-alive ticks at 20 and 40 ms: sent at once
    waited_ms = (sent_at[first] - asked) * 1000 - job_first_byte_ms
    assert waited_ms < 6 + stolen.ms, (waited_ms, stolen.ms)
