"""Recordings the carrier emulators make: a WAV per recording, served back at its URL.

The audio is a stand-in (the emulators do not mix the call's audio): 8 kHz 16-bit, one or two
channels as asked, as long as the recording ran, with a quiet tone on the first channel so a
test can tell it from an empty file. Each emulator names its recordings and files its own way
(Twilio `RE…` + `.wav`, Telnyx `recording_urls`, Plivo `record_url`); this keeps the files.
"""

from __future__ import annotations

import io
import time
import uuid
import wave
from dataclasses import dataclass, field

import numpy as np

RATE = 8000
MAX_SECONDS = 3600  # a runaway call does not fill memory


@dataclass
class SimRecording:
    id: str
    call_id: str
    channels: int  # 1 or 2
    started: float = field(default_factory=time.time)
    ended: float | None = None
    audio: bytes = b""

    @property
    def duration_s(self) -> int:
        """Whole seconds, as the carriers report them (at least 1 once something was heard)."""
        end = self.ended if self.ended is not None else time.time()
        return max(1, round(end - self.started))


def stand_in_wav(seconds: int, channels: int) -> bytes:
    frames = min(seconds, MAX_SECONDS) * RATE
    t = np.arange(frames) / RATE
    tone = (np.sin(2 * np.pi * 440 * t) * 3000).astype("<i2")
    samples = np.zeros((frames, channels), dtype="<i2")
    samples[:, 0] = tone
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(samples.tobytes())
    return out.getvalue()


class SimRecordings:
    """An emulator's recordings by id; `finish` makes a call's files when it ends."""

    def __init__(self) -> None:
        self.by_id: dict[str, SimRecording] = {}

    def start(self, call_id: str, channels: int, prefix: str = "") -> SimRecording:
        recording = SimRecording(prefix + uuid.uuid4().hex, call_id, channels)
        self.by_id[recording.id] = recording
        return recording

    def finish(self, call_id: str) -> list[SimRecording]:
        """Stop the call's running recordings and make their files; the ones just stopped."""
        done = []
        for recording in self.by_id.values():
            if recording.call_id == call_id and recording.ended is None:
                recording.ended = time.time()
                recording.audio = stand_in_wav(recording.duration_s, recording.channels)
                done.append(recording)
        return done

    def file(self, recording_id: str) -> bytes | None:
        recording = self.by_id.get(recording_id)
        return recording.audio if recording is not None and recording.ended else None
