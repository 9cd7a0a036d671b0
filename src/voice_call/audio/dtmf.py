"""In-band DTMF: touch-tone digits as µ-law audio, for sending keys over a media stream.

A Twilio Media Stream has no "send digits" message, and a live TwiML update (`<Play digits>`)
would replace the `<Connect><Stream>` that carries the call. So on a streamed call the keys are
played as tones into the stream, exactly what a phone's keypad puts on the line: two sine
waves per key (ITU-T Q.23 frequencies), 100 ms on and 100 ms off (Q.24 asks for ≥ 40 ms),
each tone about -7 dBm0 so the pair stays well clear of clipping. Pause characters wait:
`w`, `p` and `,` half a second, `W` and `P` one second (the carriers' own spelling).

`goertzel_digits` is the matching detector (Goertzel's single-bin DFT over 20 ms blocks), used by
the emulated callee and the tests to read the keys back out of what was played.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from voice_call.audio.g711 import SAMPLE_RATE, pcm16_to_ulaw, ulaw_to_pcm16

ROWS = (697, 770, 852, 941)
COLUMNS = (1209, 1336, 1477, 1633)
KEYPAD = ("123A", "456B", "789C", "*0#D")
TONE_MS = 100
GAP_MS = 100
PAUSES_MS = {"w": 500, "p": 500, ",": 500, "W": 1000, "P": 1000}
AMPLITUDE = 0.3 * 32767  # each of the two sines: their sum peaks at 0.6 of full scale
DIGITS = frozenset("".join(KEYPAD)) | frozenset(PAUSES_MS)

_FREQUENCIES = {
    key: (ROWS[r], COLUMNS[c]) for r, row in enumerate(KEYPAD) for c, key in enumerate(row)
}


def frequencies(key: str) -> tuple[int, int]:
    """(row Hz, column Hz) of a key; KeyError for anything else."""
    return _FREQUENCIES[key.upper()]


def _samples(ms: int) -> int:
    return SAMPLE_RATE * ms // 1000


def dtmf_pcm(digits: str) -> npt.NDArray[np.int16]:
    """16-bit 8 kHz PCM for `digits` (0-9 A-D * # and the pauses); ValueError for others."""
    bad = sorted(set(digits) - DIGITS)
    if bad:
        raise ValueError(f"not a DTMF key or pause: {''.join(bad)!r}")
    parts: list[npt.NDArray[np.float64]] = []
    t = np.arange(_samples(TONE_MS)) / SAMPLE_RATE
    for key in digits:
        if key in PAUSES_MS:
            parts.append(np.zeros(_samples(PAUSES_MS[key])))
            continue
        low, high = frequencies(key)
        parts.append(AMPLITUDE * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t)))
        parts.append(np.zeros(_samples(GAP_MS)))
    if not parts:
        return np.zeros(0, dtype=np.int16)
    return np.round(np.concatenate(parts)).astype(np.int16)


def dtmf_ulaw(digits: str) -> bytes:
    """The µ-law bytes of `digits`' tones, ready to frame and stream."""
    return pcm16_to_ulaw(dtmf_pcm(digits))


def _power(block: npt.NDArray[np.float64], freq: float) -> float:
    """The block's energy at `freq`: the one DFT bin Goertzel computes, as a dot product."""
    n = np.arange(len(block))
    return float(abs(block @ np.exp(-2j * np.pi * freq * n / SAMPLE_RATE)) ** 2)


def _block_key(block: npt.NDArray[np.float64]) -> str | None:
    total = float(np.dot(block, block)) * len(block) / 2
    if total < 1e6 * len(block):  # quiet: silence or line noise
        return None
    rows = [_power(block, f) for f in ROWS]
    cols = [_power(block, f) for f in COLUMNS]
    r, c = int(np.argmax(rows)), int(np.argmax(cols))
    # Both tones present and together most of the block's energy: a key, not speech.
    if rows[r] + cols[c] < 0.6 * total:
        return None
    return KEYPAD[r][c]


def goertzel_digits(ulaw: bytes, block_ms: int = 20) -> str:
    """The keys played in µ-law audio: a key counts once per run of ≥ 2 blocks holding it."""
    pcm = ulaw_to_pcm16(ulaw).astype(np.float64)
    size = _samples(block_ms)
    keys: list[str] = []
    run_key: str | None = None
    run = 0
    for start in range(0, len(pcm) - size + 1, size):
        key = _block_key(pcm[start : start + size])
        if key == run_key:
            run += 1
        else:
            run_key, run = key, 1
        if key is not None and run == 2:
            keys.append(key)
    return "".join(keys)
