"""The bridge's audio both ways, speak/play, and barge-in, against a scripted model."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

from tests.realtime.scripted import BridgeHarness, tone
from tests.support import wait_until
from voice_call.media.pacer import SlotScheduler
from voice_call.media.playback import PlaybackQueueFull, PlaybackStatus, SessionClosed
from voice_call.media.stream_protocols import Dtmf, Media
from voice_call.models import EventType
from voice_call.realtime import bridge


def payloads(h: BridgeHarness) -> list[bytes]:
    return [base64.b64decode(f["media"]["payload"]) for f in h.wire.of("media")]


async def test_caller_audio_reaches_the_model_untouched_and_dtmf_is_an_event() -> None:
    h = await BridgeHarness().start()
    frames = [bytes([n]) * 160 for n in range(1, 6)]
    for frame in frames:
        h.session.handle(Media(frame))
    h.session.handle(Media(b"\x55" * 160, track="outbound"))  # our own audio, echoed back
    h.session.handle(Dtmf("5"))
    await h.close()
    assert h.model.audio == frames and h.session.inbound_frames == 5
    assert [(e.type, e.digits) for e in h.events] == [(EventType.DTMF, "5")]
    assert h.model.closed


async def test_model_audio_leaves_in_20_ms_frames_on_the_clock_with_marks() -> None:
    h = await BridgeHarness().start()
    sent_at: list[float] = []
    h.wire.changed = _Stamp(h, sent_at)
    audio = tone(50) + b"\x7f" * 50  # 1 s and a partial frame
    h.model.reply(audio, "One second of speech.", chunk=333)
    end = await h.wait_end_mark()
    out = payloads(h)
    assert len(out) == 51 and b"".join(out)[: len(audio)] == audio
    assert out[-1] == b"\x7f" * 50 + b"\xff" * 110  # the tail padded with µ-law silence
    for n, at in enumerate(sent_at):  # never early: frame n leaves n·20 ms after frame 0
        assert at - sent_at[0] >= n * 0.020 - 0.001
    assert h.marks() == [f"r1.{n}" for n in (10, 20, 30, 40, 50)] + ["r1.51.end"]
    assert end == "r1.51.end" and h.wire.frames[-1]["event"] == "mark"
    assert h.session.playing
    h.ack()
    await wait_until(lambda: not h.session.playing)
    await h.close()
    assert [e.type for e in h.events] == [EventType.SPEAKING, EventType.REPLIED]
    assert h.events[0].text == "One second of speech."
    replied = h.events[1]
    assert (replied.text, replied.is_final, replied.duration_ms) == (
        "One second of speech.",
        True,
        1020,
    )


class _Stamp(asyncio.Event):
    """Recorder's `changed` event, stamping when each media frame was written."""

    def __init__(self, h: BridgeHarness, stamps: list[float]) -> None:
        super().__init__()
        self.h, self.stamps = h, stamps

    def set(self) -> None:
        if self.h.wire.frames[-1]["event"] == "media":
            self.stamps.append(time.monotonic())
        super().set()


async def test_a_reply_slower_than_real_time_waits_for_its_audio_without_filler() -> None:
    h = await BridgeHarness().start()
    h.model.reply(tone(3), "Part one", done=False)
    await h.wire.wait(lambda: len(h.wire.of("media")) == 3)
    h.model.reply(tone(2, first=3), " and two.")
    await h.wait_end_mark()
    await h.close()
    assert b"".join(payloads(h)) == tone(5)  # no silence was invented between the deltas


async def test_speak_says_the_text_verbatim_and_settles_when_its_end_mark_returns() -> None:
    h = await BridgeHarness().start()
    h.model.speech_ended_at = time.monotonic()
    playback = h.session.speak("Your table is booked for eight.")
    assert h.model.said == ["Your table is booked for eight."]
    h.model.reply(tone(12), "Your table is booked for eight.")
    end = await h.wait_end_mark()
    assert not playback.done()  # sent, but not heard yet
    h.ack("r1.10")
    assert not playback.done()
    h.ack(end)
    result = await asyncio.wait_for(playback, 1)
    await h.close()
    assert result.status is PlaybackStatus.PLAYED and result.heard_ms == result.audio_ms == 240
    assert result.heard_text == "Your table is booked for eight."
    assert [e.type for e in h.events] == [EventType.SPEAKING, EventType.PLAYBACK_ENDED]
    assert h.events[1].text == "Your table is booked for eight." and h.events[1].is_final
    assert len(h.session.voice_to_voice_ms) == 1 and 0 <= h.session.voice_to_voice_ms[0] < 5000


async def test_barge_in_clears_at_once_tells_the_model_the_heard_ms_and_drops_late_audio() -> None:
    h = await BridgeHarness().start()
    words = "one two three four five six seven eight nine ten"
    h.model.reply(tone(100), words, done=False)  # 2 s received, still generating
    await h.wire.wait(lambda: len(h.marks()) >= 3)
    h.ack("r1.10", "r1.20")  # 400 ms heard
    h.model.to.on_speech_started()
    # within the same tick: media still queued is gone and the clear is the last thing sent
    assert h.wire.frames[-1] == {"event": "clear", "streamSid": "MZ1"}
    sent = len(h.wire.of("media"))
    assert h.model.interruptions == [400] and h.session.barge_ins == 1
    assert not h.session.playing
    h.ack()  # Twilio echoes cleared marks at once: they mean nothing now
    h.model.reply(tone(20), " eleven twelve")  # late deltas of the cut response
    await asyncio.sleep(0)
    assert len(h.wire.of("media")) == sent and h.session.dropped_audio == 4  # 800-byte deltas
    h.model.reply(tone(5), "Yes?")  # the next response plays
    await h.wire.wait(lambda: len(h.wire.of("media")) == sent + 5)
    await h.close()
    replied = h.of(EventType.REPLIED)
    # 20 of the 100 frames received were heard: the first 20% of the words
    # (the next response was never heard before the close: not reported)
    assert [(e.text, e.is_final, e.duration_ms) for e in replied] == [("one two", False, 400)]
    assert ("", False) in [(e.transcript, e.is_final) for e in h.of(EventType.SPEECH)]
    assert h.session.history[0] == ("bot", "one two")


async def test_a_barge_in_between_marks_counts_what_played_since_the_last_echo() -> None:
    h = await BridgeHarness().start()
    h.model.reply(tone(100), "one two three four five six seven eight nine ten", done=False)
    await h.wire.wait(lambda: "r1.10" in h.marks())
    h.ack("r1.10")  # echoed at once: this line plays our audio as soon as it arrives
    await h.wire.wait(lambda: len(h.wire.of("media")) >= 17)  # 7 frames past that mark
    sent = len(h.wire.of("media"))
    h.model.to.on_speech_started()
    (told,) = h.model.interruptions
    # the frames sent longer ago than the line's lag have played: not the mark's 200 ms
    assert sent * 20 - 40 <= told <= sent * 20, (told, sent)
    await h.close()
    (replied,) = h.of(EventType.REPLIED)
    assert replied.duration_ms == told and not replied.is_final


async def test_barge_in_on_a_speak_settles_it_interrupted_with_what_was_heard() -> None:
    h = await BridgeHarness().start()
    playback = h.session.speak("Please hold while I look that up for you.")
    h.model.reply(tone(40), "Please hold while I look that up for you.")
    await h.wire.wait(lambda: len(h.marks()) >= 2)
    h.ack("r1.20")
    h.model.to.on_speech_started()
    result = await asyncio.wait_for(playback, 1)
    await h.close()
    assert result.status is PlaybackStatus.INTERRUPTED and result.heard_ms == 400
    assert result.heard_text == "Please hold while I"  # half the audio, half the words
    ended = h.of(EventType.PLAYBACK_ENDED)
    assert [(e.text, e.is_final, e.duration_ms) for e in ended] == [
        ("Please hold while I", False, 400)
    ]
    assert h.model.interruptions == [400]


async def test_protected_speech_and_tones_ignore_the_caller_but_clear_stops_them() -> None:
    h = await BridgeHarness().start()
    greeting = h.session.speak("Welcome to the clinic.", interruptible=False)
    h.model.reply(tone(15), "Welcome to the clinic.")
    await h.wire.wait(lambda: h.wire.of("media"))
    h.model.to.on_speech_started()
    end = await h.wait_end_mark()
    assert not h.wire.of("clear") and h.model.interruptions == []
    assert h.session.suppressed_speech == 1
    h.ack(end)
    assert (await asyncio.wait_for(greeting, 1)).status is PlaybackStatus.PLAYED
    tones = h.session.play(tone(30), "DTMF 12")
    await h.wire.wait(lambda: len(h.wire.of("media")) >= 20)
    h.model.to.on_speech_started()  # an IVR talking over its own menu is not a barge-in
    assert not h.wire.of("clear")
    h.session.clear()
    result = await asyncio.wait_for(tones, 1)
    await h.close()
    assert h.wire.of("clear") and result.status is PlaybackStatus.INTERRUPTED
    assert EventType.REPLIED not in [e.type for e in h.events]  # tones are never bot speech


async def test_close_settles_everything_and_refuses_more() -> None:
    h = await BridgeHarness().start()
    playing = h.session.speak("First.")
    waiting = h.session.speak("Second.")
    h.model.reply(tone(10), "First.", done=False)
    await h.wire.wait(lambda: h.wire.of("media"))
    await h.close()
    first, second = await asyncio.gather(playing, waiting)
    assert first.status is PlaybackStatus.INTERRUPTED and first.audio_sent
    assert second.status is PlaybackStatus.SKIPPED and not second.audio_sent
    assert h.model.closed and h.model.listener is None
    with pytest.raises(SessionClosed):
        h.session.speak("Too late.")
    with pytest.raises(SessionClosed):
        h.session.play(tone(1), "DTMF 1")


async def test_the_callers_words_are_speech_events_the_final_with_its_endpointing() -> None:
    h = await BridgeHarness().start()
    h.model.to.on_input_transcript("I'd like", False)
    h.model.speech_ended_at = time.monotonic()
    h.model.to.on_input_transcript("I'd like a table.", True)
    await h.close()
    speech = h.of(EventType.SPEECH)
    assert [(e.transcript, e.is_final) for e in speech] == [
        ("I'd like", False),
        ("I'd like a table.", True),
    ]
    assert speech[0].endpointing_ms is None
    assert speech[1].endpointing_ms is not None and 0 <= speech[1].endpointing_ms < 5000
    assert h.session.history == (("user", "I'd like a table."),)


async def test_speak_of_nothing_is_played_and_a_ninth_waiting_text_is_refused() -> None:
    h = await BridgeHarness().start()
    empty = await h.session.speak("  ")
    assert empty.status is PlaybackStatus.PLAYED and not empty.audio_sent
    waiting = [h.session.speak(f"Line {n}.") for n in range(8)]
    with pytest.raises(PlaybackQueueFull):
        h.session.speak("One too many.")
    await h.close()
    assert h.model.said == [f"Line {n}." for n in range(8)]
    assert all(f.result().status is PlaybackStatus.SKIPPED for f in waiting)


async def test_a_lost_end_mark_does_not_hang_the_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bridge, "ACK_GRACE_S", 0.05)
    h = await BridgeHarness().start()
    playback = h.session.speak("No echo.")
    h.model.reply(tone(3), "No echo.")
    result = await asyncio.wait_for(playback, 3)  # the carrier never echoes a mark
    await h.close()
    assert result.status is PlaybackStatus.PLAYED and result.heard_ms == 60


async def test_a_response_without_audio_fails_its_speak_so_the_native_voice_can_say_it() -> None:
    h = await BridgeHarness().start()
    playback = h.session.speak("Words only.")
    h.model.to.on_output_transcript("Words only.")
    h.model.to.on_response_done()
    result = await asyncio.wait_for(playback, 1)
    await h.close()
    assert result.status is PlaybackStatus.FAILED and not result.audio_sent
    assert result.error == "the model sent no audio" and not h.wire.of("media")


async def test_many_calls_share_one_slot_scheduler() -> None:
    scheduler = SlotScheduler()
    calls = [await BridgeHarness(scheduler=scheduler).start() for _ in range(3)]
    for n, h in enumerate(calls):
        h.model.reply(tone(12, first=n), f"Call {n}.")
    for h in calls:
        await h.wait_end_mark()
    for n, h in enumerate(calls):
        await h.close()
        assert b"".join(payloads(h)) == tone(12, first=n)
        assert h.stats.count == 12  # every frame's lateness measured on the shared clock
