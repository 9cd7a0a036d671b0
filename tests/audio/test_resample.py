"""Resampling TTS audio to 8 kHz with soxr: pitch kept, what a phone cannot carry removed."""

from __future__ import annotations

import numpy as np
import pytest

from voice_call.audio.resample import SUPPORTED_RATES, Resampler, UnsupportedRate, resample

SECONDS = 2


def tone(freq: float, rate: int, seconds: float = SECONDS, level: float = 16000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * level).astype(np.int16)


def stream_through(samples: np.ndarray, rate: int, chunk_bytes: int = 4801) -> np.ndarray:
    """Feed little-endian bytes in odd-sized chunks, as an HTTP body arrives."""
    data = samples.astype("<i2").tobytes()
    resampler = Resampler(rate)
    out = [resampler.push(data[i : i + chunk_bytes]) for i in range(0, len(data), chunk_bytes)]
    out.append(resampler.flush())
    return np.concatenate(out)


def peak_frequency(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency, refined between FFT bins by parabolic interpolation."""
    windowed = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return float((k + offset) * rate / len(samples))


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@pytest.mark.parametrize("rate", [r for r in SUPPORTED_RATES if r != 8000])
def test_a_1khz_tone_stays_at_1khz(rate: int) -> None:
    out = stream_through(tone(1000, rate), rate)
    assert abs(len(out) - 8000 * SECONDS) <= 2
    middle = out[2000:-2000]  # away from the filter's start-up and tail
    assert abs(peak_frequency(middle, 8000) - 1000) < 1.0
    assert 0.9 < rms(middle) / (16000 / np.sqrt(2)) < 1.05  # passband keeps its level


@pytest.mark.parametrize("rate", [r for r in SUPPORTED_RATES if r != 8000])
def test_a_5khz_tone_is_attenuated_by_at_least_60db(rate: int) -> None:
    out = stream_through(tone(5000, rate), rate)[2000:-2000]
    attenuation_db = 20 * np.log10(max(rms(out), 1e-9) / (16000 / np.sqrt(2)))
    assert attenuation_db <= -60, attenuation_db


def test_naive_decimation_would_fail_the_same_check() -> None:
    """The check above is meaningful: every third sample of 5 kHz at 24 kHz aliases to 3 kHz."""
    decimated = tone(5000, 24000)[::3]
    assert 20 * np.log10(rms(decimated) / (16000 / np.sqrt(2))) > -1


def test_chunking_and_odd_bytes_do_not_change_the_output() -> None:
    samples = tone(440, 16000, 0.5)
    whole = stream_through(samples, 16000, chunk_bytes=len(samples) * 2)
    for size in (1, 3, 161, 4801):
        out = stream_through(samples, 16000, chunk_bytes=size)
        # soxr rounds a little differently per block (±2 seen); a split sample is thousands off
        assert len(out) == len(whole)
        assert np.abs(out.astype(np.int32) - whole).max() <= 4


def test_one_shot_and_passthrough() -> None:
    samples = tone(1000, 48000, 0.5)
    assert abs(len(resample(samples, 48000)) - 4000) <= 1
    same = tone(1000, 8000, 0.1)
    assert np.array_equal(resample(same, 8000), same)
    passthrough = Resampler(8000)
    assert np.array_equal(passthrough.push(same.astype("<i2").tobytes()), same)
    assert len(passthrough.flush()) == 0


@pytest.mark.parametrize("rate", [11025, 0, -8000, 8000.0, True, "16000"])
def test_unsupported_rates_are_refused_with_the_list(rate: object) -> None:
    with pytest.raises(UnsupportedRate, match="use one of 8000, 16000, 22050"):
        Resampler(rate)  # type: ignore[arg-type]
