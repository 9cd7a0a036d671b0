"""G.711 µ-law (PCMU) and A-law (PCMA): 8 kHz telephone audio, one byte per sample.

Bit-exact with the ITU-T G.191 reference (`g711.c`: `ulaw_compress`/`ulaw_expand`,
`alaw_compress`/`alaw_expand`). The reference takes the one's complement of negative samples
(``~x``, i.e. ``-x - 1``) rather than their absolute value, so e.g. -4 encodes to 0x7F, not the
0x7E of the common "bias 132" textbook encoder. Tables are built by running the reference
algorithm, vectorised, over every input once; a frame then costs one numpy indexing operation.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000  # 160
SILENCE_BYTE = 0xFF  # µ-law code for 0
ALAW_SILENCE_BYTE = 0xD5  # A-law code for +8, its smallest positive step

Pcm16 = npt.NDArray[np.int16]
_ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32)
_ALL_CODES = np.arange(256, dtype=np.int32)


def _segment(value: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Number of significant bits of each value (0 for 0): the reference's shift-count loop."""
    bits = np.zeros_like(value)
    rest = value.copy()
    while rest.any():
        bits += rest > 0
        rest >>= 1
    return bits


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    x = _ALL_SAMPLES
    # 14-bit magnitude, one's complement for negatives, plus the µ-law/A-law offset 33.
    absno = np.where(x < 0, (~x) >> 2, x >> 2) + 33
    absno = np.minimum(absno, 0x1FFF)
    segno = 1 + _segment(absno >> 6)
    high = 8 - segno
    low = 0x0F - ((absno >> segno) & 0x0F)
    code = (high << 4) | low
    code = np.where(x >= 0, code | 0x80, code)
    return np.asarray(code & 0xFF, dtype=np.uint8)


def _build_ulaw_decode() -> Pcm16:
    code = _ALL_CODES
    sign = np.where(code < 0x80, -1, 1)
    complement = ~code
    exponent = (complement >> 4) & 0x07
    mantissa = complement & 0x0F
    step = 4 << (exponent + 1)
    value = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    return np.asarray(sign * value, dtype=np.int16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    x = _ALL_SAMPLES
    ix = np.where(x < 0, (~x) >> 4, x >> 4)  # 0 <= ix < 2048
    # Segments 1..7: shift the mantissa down until it fits 5 bits, then drop its leading 1.
    exponent = np.maximum(_segment(ix) - 4, 1)
    shifted = (ix >> (exponent - 1)) - 16 + (exponent << 4)
    code = np.where(ix > 15, shifted, ix)
    code = np.where(x >= 0, code | 0x80, code)
    return np.asarray((code ^ 0x55) & 0xFF, dtype=np.uint8)


def _build_alaw_decode() -> Pcm16:
    code = _ALL_CODES
    ix = (code ^ 0x55) & 0x7F
    exponent = ix >> 4
    mantissa = ix & 0x0F
    mantissa = np.where(exponent > 0, mantissa + 16, mantissa)
    mantissa = (mantissa << 4) + 0x08
    mantissa = np.where(exponent > 1, mantissa << np.maximum(exponent - 1, 0), mantissa)
    return np.asarray(np.where(code > 127, mantissa, -mantissa), dtype=np.int16)


_ULAW_ENCODE = _build_ulaw_encode()
_ULAW_DECODE = _build_ulaw_decode()
_ALAW_ENCODE = _build_alaw_encode()
_ALAW_DECODE = _build_alaw_decode()
# The encoders again, indexed by a sample's 16 bits read as unsigned (0..32767, then -32768..-1):
# int16 samples index them through a free view, with no widening copy and no offset added.
_ULAW_BY_BITS = np.roll(_ULAW_ENCODE, 32768)
_ALAW_BY_BITS = np.roll(_ALAW_ENCODE, 32768)


def _encode(
    samples: npt.NDArray[np.int16], by_bits: npt.NDArray[np.uint8], table: npt.NDArray[np.uint8]
) -> bytes:
    array = np.asarray(samples)
    if array.dtype == np.int16:  # the usual case: index by the samples' bits, no copy first
        return by_bits[array.view(np.uint16)].tobytes()
    return table[np.asarray(array, dtype=np.int32) + 32768].tobytes()


def ulaw_to_pcm16(data: bytes) -> Pcm16:
    """µ-law bytes → signed 16-bit samples."""
    decoded: Pcm16 = _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]
    return decoded


def pcm16_to_ulaw(samples: npt.NDArray[np.int16]) -> bytes:
    """Signed 16-bit samples → µ-law bytes."""
    return _encode(samples, _ULAW_BY_BITS, _ULAW_ENCODE)


def alaw_to_pcm16(data: bytes) -> Pcm16:
    """A-law bytes → signed 16-bit samples."""
    decoded: Pcm16 = _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]
    return decoded


def pcm16_to_alaw(samples: npt.NDArray[np.int16]) -> bytes:
    """Signed 16-bit samples → A-law bytes."""
    return _encode(samples, _ALAW_BY_BITS, _ALAW_ENCODE)


def frames(data: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    """Split µ-law audio into 20 ms frames, padding the last one with silence."""
    out = [data[i : i + size] for i in range(0, len(data), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1] + bytes([SILENCE_BYTE]) * (size - len(out[-1]))
    return out
