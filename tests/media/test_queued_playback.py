"""A reply queued behind a long one: its synthesis waits for playback, never times out for it."""

from __future__ import annotations

import asyncio

from tests.media.stack import SessionHarness
from voice_call.media.playback import PlaybackStatus
from voice_call.speech.tts.fake import FakeTts


async def test_a_long_reply_queued_behind_a_longer_one_is_played_and_heard_whole() -> None:
    # 40 ms a character, produced at once: each line is ~2.4 s of audio, more than the 1 s
    # synthesis timeout; the second waits behind the first with its first second ready.
    h = SessionHarness(FakeTts({"msPerChar": 40, "firstChunkMs": 0, "chunkMs": 200}), timeout_s=1.0)
    first = "This first line goes on for a good few seconds of audio, and more."
    second = "The second line is queued behind it and is just as long, if not more."
    playbacks = [h.session.speak(first), h.session.speak(second)]
    async with asyncio.timeout(15):
        while not all(p.done() for p in playbacks):
            h.ack_marks()  # the carrier says each mark played
            await asyncio.sleep(0.02)
    results = [p.result() for p in playbacks]
    await h.close()
    for text, result in zip((first, second), results, strict=True):
        assert result.status is PlaybackStatus.PLAYED and result.error is None, result
        assert result.audio_ms >= 2000, result  # every frame, not the first second only
        assert result.heard_ms == result.audio_ms and result.heard_text == text
    assert h.session.audio_frames * 20 == sum(r.audio_ms for r in results)
