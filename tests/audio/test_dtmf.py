"""In-band DTMF: every key's two tones, pauses, and the detector that reads them back."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_call.audio.dtmf import (
    COLUMNS,
    GAP_MS,
    KEYPAD,
    ROWS,
    TONE_MS,
    dtmf_pcm,
    dtmf_ulaw,
    goertzel_digits,
)
from voice_call.audio.g711 import SAMPLE_RATE, pcm16_to_ulaw

ALL_KEYS = "".join(KEYPAD)


def _peaks(pcm: np.ndarray) -> list[float]:
    """The two strongest frequencies of a tone (Hz), by FFT."""
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)), n=8 * len(pcm)))
    freqs = np.fft.rfftfreq(8 * len(pcm), 1 / SAMPLE_RATE)
    low = freqs[np.argmax(np.where(freqs < 1100, spectrum, 0))]
    high = freqs[np.argmax(np.where(freqs > 1100, spectrum, 0))]
    return [float(low), float(high)]


@pytest.mark.parametrize("key", list(ALL_KEYS))
def test_each_key_is_its_row_and_column_tone(key: str) -> None:
    pcm = dtmf_pcm(key)
    tone = SAMPLE_RATE * TONE_MS // 1000
    assert len(pcm) == SAMPLE_RATE * (TONE_MS + GAP_MS) // 1000
    assert not pcm[tone:].any()  # the gap after it is silent
    row = next(r for r, keys in enumerate(KEYPAD) if key in keys)
    low, high = _peaks(pcm[:tone].astype(np.float64))
    assert abs(low - ROWS[row]) < 10 and abs(high - COLUMNS[KEYPAD[row].index(key)]) < 10
    assert np.abs(pcm).max() < 0.7 * 32767  # no clipping


def test_pauses_wait_and_bad_keys_are_refused() -> None:
    assert len(dtmf_pcm("1w2")) == SAMPLE_RATE * (200 + 500 + 200) // 1000
    assert len(dtmf_pcm("W")) == len(dtmf_pcm("P")) == SAMPLE_RATE
    assert not dtmf_pcm("p,").any()
    with pytest.raises(ValueError, match="'x'"):
        dtmf_pcm("12x")


def test_the_detector_reads_every_key_back_from_ulaw() -> None:
    assert goertzel_digits(dtmf_ulaw(ALL_KEYS)) == ALL_KEYS
    assert goertzel_digits(dtmf_ulaw("55")) == "55"  # the gap separates repeats
    assert goertzel_digits(b"\xff" * 37 + dtmf_ulaw("9#")) == "9#"  # not block-aligned


def test_the_detector_ignores_noise_and_speech_like_audio() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 3000, SAMPLE_RATE * 2).astype(np.int16)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    vowel = sum(2000 * np.sin(2 * np.pi * f * t) for f in (220, 440, 660, 880, 1100))
    assert goertzel_digits(pcm16_to_ulaw(noise)) == ""
    assert goertzel_digits(pcm16_to_ulaw(np.asarray(vowel, dtype=np.int16))) == ""
    assert goertzel_digits(b"\xff" * 1600) == ""


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet=ALL_KEYS + "wW", min_size=1, max_size=12))
def test_any_key_sequence_round_trips(digits: str) -> None:
    assert goertzel_digits(dtmf_ulaw(digits)) == digits.replace("w", "").replace("W", "")
