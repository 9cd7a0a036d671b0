"""The local dual-channel WAV of a streamed call (`recording.enabled`): left what the caller
said, right what the bot sent, each at the time it happened on the line."""

from __future__ import annotations

import asyncio
import base64
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.media.carrier import loud_frames
from tests.media.stack import CARRIERS, media_server
from tests.realtime import e2e
from tests.realtime.test_e2e_twilio import realtime_twilio
from tests.support import wait_until
from voice_call.audio.g711 import FRAME_BYTES, ulaw_to_pcm16
from voice_call.media.playback import PlaybackStatus
from voice_call.media.recorder import SlotAligner, WavRecorder

GREETING = "Hello there. This is your appointment reminder."
TONE_FRAMES = 25  # 500 ms of the caller's 300 Hz tone


def read_wav(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    return stereo[:, 0], stereo[:, 1]


def trimmed(samples: np.ndarray) -> np.ndarray:
    voiced = np.flatnonzero(samples)
    return samples[voiced[0] : voiced[-1] + 1] if len(voiced) else samples[:0]


def onset_s(samples: np.ndarray) -> float:
    return float(np.flatnonzero(samples)[0]) / 8000


@pytest.mark.parametrize("carrier", CARRIERS)
async def test_streamed_call_is_recorded_in_two_aligned_channels(
    tmp_path: Path, carrier: str
) -> None:
    async with media_server(tmp_path, carrier, recording={"enabled": True}) as media:
        record = await media.new_call()
        client = media.client(record)
        await client.open()
        session = await media.runtime.media.wait_for(record.call_id, 5)
        assert session is not None
        result = await asyncio.wait_for(session.speak(GREETING, interruptible=False), 15)
        assert result.status is PlaybackStatus.PLAYED
        client.talk(loud_frames(TONE_FRAMES))
        await wait_until(lambda: client.first_loud_sent_at is not None)
        await asyncio.sleep(0.7)  # the tone (0.5 s) goes out at the carrier's own pace
        await client.stop()

        async def recorded() -> bool:
            latest = await media.runtime.store.get(record.call_id)
            return latest is not None and "local" in latest.metadata.get("recording", {})

        await wait_until(recorded)
        latest = await media.runtime.store.get(record.call_id)
    assert latest is not None
    local = latest.metadata["recording"]["local"]
    path = Path(local["path"])
    assert path.parent == tmp_path / "home" / "recordings" and path.suffix == ".wav"
    left, right = read_wav(path)
    assert local["durationS"] == pytest.approx(len(left) / 8000, abs=0.001)
    # right: exactly the bot's frames as the carrier received them, nothing of the caller's
    frames = client.media_frames()
    sent = b"".join(base64.b64decode(f.frame["media"]["payload"]) for f in frames)
    np.testing.assert_array_equal(trimmed(right), trimmed(ulaw_to_pcm16(sent)))
    # left: exactly the caller's tone, nothing of the bot's
    tone = ulaw_to_pcm16(b"".join(loud_frames(TONE_FRAMES)))
    np.testing.assert_array_equal(trimmed(left), trimmed(tone))
    # in the right places: the tone came this long after the greeting's first voiced frame
    # on the carrier's clock, and does in the file (give or take two frames of transit)
    first_voiced = next(
        f for f in frames if set(base64.b64decode(f.frame["media"]["payload"])) != {0xFF}
    )
    assert client.first_loud_sent_at is not None
    on_the_line = client.first_loud_sent_at - first_voiced.at
    in_the_file = onset_s(left) - onset_s(right)
    assert in_the_file == pytest.approx(on_the_line, abs=0.045), (in_the_file, on_the_line)


def test_aligner_holds_slots_for_the_late_side_and_fills_gaps() -> None:
    out: list[tuple[int, bytes | None, bytes | None]] = []
    aligner = SlotAligner(out.extend, hold=2)
    aligner.add("bot", 0, b"b0")
    aligner.add("bot", 3, b"b3")
    aligner.add("caller", 0, b"c0")  # late, still in time: slot 0 is held back
    aligner.add("bot", 4, b"b4")  # 4 slots ahead of the oldest: slots 0, 1 go out
    assert out == [(0, b"c0", b"b0"), (1, None, None)]
    aligner.add("caller", 1, b"c1")  # too late: slot 1 was written
    assert aligner.dropped == 1
    aligner.flush()
    assert out[2:] == [(2, None, None), (3, None, b"b3"), (4, None, b"b4")]


def test_recorder_writes_each_side_to_its_channel_at_its_slot(tmp_path: Path) -> None:
    done: list[tuple[Path, float]] = []
    recorder = WavRecorder(tmp_path / "rec" / "call.wav", lambda p, s: done.append((p, s)))
    tone = loud_frames(2)
    recorder.frame("bot", 1, tone[0])  # slot 1: 20-40 ms, right channel
    recorder.frame("caller", 3, tone[1])  # slot 3: 60-80 ms, left channel
    recorder.close()
    recorder.close()  # once only
    assert done == [(tmp_path / "rec" / "call.wav", 0.08)]
    left, right = read_wav(tmp_path / "rec" / "call.wav")
    assert len(left) == 4 * FRAME_BYTES
    np.testing.assert_array_equal(right[160:320], ulaw_to_pcm16(tone[0]))
    np.testing.assert_array_equal(left[480:640], ulaw_to_pcm16(tone[1]))
    assert not right[:160].any() and not right[320:].any() and not left[:480].any()


async def test_a_realtime_call_is_recorded_both_ways(tmp_path: Path) -> None:
    async with realtime_twilio(tmp_path, [e2e.ANSWER], recording={"enabled": True}) as rt:
        call_id, call = await rt.dial()
        expected = [("bot", e2e.GREETING), ("user", e2e.QUESTION), ("bot", e2e.ANSWER)]
        await rt.stack.wait_record(call_id, lambda r: e2e.lines(r) == expected, timeout=20)
        await rt.stack.call("voicecall.end", callId=call_id)
        record = await rt.stack.wait_record(
            call_id, lambda r: "local" in r.metadata.get("recording", {}), timeout=20
        )
    left, right = read_wav(Path(record.metadata["recording"]["local"]["path"]))
    # right: what the bridge sent, as the emulator received it (the greeting, then the answer
    # after a pause the file keeps and the emulator's byte log does not)
    sent = ulaw_to_pcm16(bytes(call.extra["audio_in"]))
    np.testing.assert_array_equal(right[right != 0], sent[sent != 0])
    # left: the callee's question, in that pause: after the greeting, before the answer
    voiced = np.flatnonzero(right)
    pause = np.flatnonzero(np.diff(voiced) > 8000 * 0.3)  # the longest gaps in the bot's audio
    assert len(pause), "no pause between the greeting and the answer"
    gap_start, gap_end = voiced[pause[0]], voiced[pause[0] + 1]
    question = np.flatnonzero(left)
    assert len(question) and gap_start <= question[0] <= gap_end, (gap_start, question[0], gap_end)
