"""Input audio for the fake Realtime transcription socket: decoding and an energy VAD.

The fake cannot recognise words, but it must decide *when* the caller spoke, since that timing
(speech_started, then speech_stopped after `silence_duration_ms` of quiet) is what an app's
turn-taking reacts to. A 10 ms RMS energy gate does that deterministically on real µ-law or
PCM16 audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voice_call.audio.g711 import ulaw_to_pcm16

Samples = npt.NDArray[np.int16]
WINDOW_MS = 10
# [M] OpenAI's server VAD is a model whose `threshold` (0..1) is a speech probability; the fake
# maps it linearly onto loudness: threshold 0.5 ⇒ a window is speech at RMS ≥ 2.5% of full
# scale (≈ -32 dBFS), well above line noise and well below any spoken syllable.
LEVEL_PER_THRESHOLD = 0.05


def _alaw_table() -> Samples:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = (codes & 0x0F) << 4
    shifted = (mantissa + 0x108) << np.maximum(exponent - 1, 0)
    magnitude = np.where(exponent == 0, mantissa + 8, shifted)
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


_ALAW = _alaw_table()
# Realtime's names for its input formats → sample rate.
RATES = {"pcm16": 24000, "g711_ulaw": 8000, "g711_alaw": 8000}


def decode(audio_format: str, data: bytes) -> Samples:
    """Appended bytes in a Realtime input format → 16-bit samples at RATES[audio_format]."""
    if audio_format == "g711_ulaw":
        return ulaw_to_pcm16(data)
    if audio_format == "g711_alaw":
        return _ALAW[np.frombuffer(data, dtype=np.uint8)]
    usable = len(data) - len(data) % 2  # a torn final sample is dropped, not an error
    return np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)


@dataclass
class VadSettings:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


@dataclass(frozen=True)
class VadEdge:
    speech: bool  # True: speech started; False: speech stopped
    at_ms: int  # session audio time of the edge (stop: when the silence ran out)
    offset: int  # index into the fed samples just after the window that decided it


class EnergyVad:
    """Speech edges from 10 ms RMS windows; audio time runs across the whole session."""

    def __init__(self, settings: VadSettings, rate: int) -> None:
        self.settings = settings
        self.rate = rate
        self.position_ms = 0  # all audio fed this session, as OpenAI's audio_*_ms count it
        self.speaking = False
        self._quiet_ms = 0
        self._pending: Samples = np.zeros(0, dtype=np.int16)

    def set_rate(self, rate: int) -> None:
        if rate != self.rate:
            self.rate, self._pending = rate, np.zeros(0, dtype=np.int16)

    def reset_speech(self) -> None:
        """After a manual commit or clear: the next loud window starts a new turn."""
        self.speaking = False
        self._quiet_ms = 0

    def feed(self, samples: Samples) -> list[VadEdge]:
        window = self.rate * WINDOW_MS // 1000
        carried = len(self._pending)
        data = np.concatenate([self._pending, samples]) if carried else samples
        level = self.settings.threshold * LEVEL_PER_THRESHOLD * 32768
        edges: list[VadEdge] = []
        whole = len(data) - len(data) % window
        for start in range(0, whole, window):
            frame = data[start : start + window].astype(np.float64)
            loud = float(np.sqrt(np.mean(frame * frame))) >= level
            self.position_ms += WINDOW_MS
            offset = start + window - carried
            if loud and not self.speaking:
                self.speaking, self._quiet_ms = True, 0
                edges.append(VadEdge(True, self.position_ms - WINDOW_MS, offset))
            elif self.speaking:
                self._quiet_ms = 0 if loud else self._quiet_ms + WINDOW_MS
                if self._quiet_ms >= self.settings.silence_duration_ms:
                    self.speaking = False
                    edges.append(VadEdge(False, self.position_ms, offset))
        self._pending = data[whole:]
        return edges
