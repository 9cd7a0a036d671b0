"""Band-limited resampling of synthesized speech to the 8 kHz of a phone line (soxr).

Never plain decimation: taking every third sample of 24 kHz audio folds everything between 4 and
12 kHz back into the voice band (the seed's first OpenAI TTS path did that; it hisses). soxr's
"LQ" recipe still stops more than 100 dB above 4 kHz and, unlike "HQ", hands back output for
nearly every 20-100 ms chunk it is fed, so the first frame of a reply is not held back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from voice_call.audio.g711 import SAMPLE_RATE

SUPPORTED_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
QUALITY = "LQ"

Pcm16 = npt.NDArray[np.int16]


class UnsupportedRate(ValueError):
    pass


def check_rate(rate: Any) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int) or rate not in SUPPORTED_RATES:
        rates = ", ".join(str(r) for r in SUPPORTED_RATES)
        raise UnsupportedRate(f"unsupported sample rate {rate!r} — use one of {rates} Hz")
    return rate


def resample(samples: Pcm16, in_rate: int, out_rate: int = SAMPLE_RATE) -> Pcm16:
    """Resample a whole clip of 16-bit samples."""
    check_rate(in_rate)
    if in_rate == out_rate or len(samples) == 0:
        return np.asarray(samples, dtype=np.int16)
    out: Pcm16 = soxr.resample(np.asarray(samples, dtype=np.int16), in_rate, out_rate, QUALITY)
    return out


class Resampler:
    """Streaming resampler for chunked 16-bit little-endian PCM (as TTS services stream it).

    `push` takes bytes as they arrive — a chunk may end in the middle of a sample, so an odd
    byte is carried to the next call — and returns the samples ready so far; `flush` returns the
    filter's tail once the input has ended. `quality` "QQ" (cubic, no filter delay) suits
    upsampling live 8 kHz audio: "LQ" holds 8→16 kHz output back in ~60 ms bursts.
    """

    def __init__(self, in_rate: int, out_rate: int = SAMPLE_RATE, quality: str = QUALITY) -> None:
        self.in_rate = check_rate(in_rate)
        self.out_rate = out_rate
        self._carry = b""
        self._stream: Any = None
        if in_rate != out_rate:
            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=quality)

    def push(self, pcm: bytes) -> Pcm16:
        data = self._carry + pcm if self._carry else pcm
        usable = len(data) - len(data) % 2
        self._carry = data[usable:]
        samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.int16, copy=False)
        return self._convert(samples, last=False)

    def flush(self) -> Pcm16:
        self._carry = b""  # half a sample at the very end is noise, not audio
        return self._convert(np.zeros(0, dtype=np.int16), last=True)

    def _convert(self, samples: Pcm16, *, last: bool) -> Pcm16:
        if self._stream is None:
            return samples
        out: Pcm16 = self._stream.resample_chunk(samples, last=last)
        return out
