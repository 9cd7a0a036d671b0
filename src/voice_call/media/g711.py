"""G.711 µ-law (PCMU) codec: 8 kHz telephone audio, one byte per sample, 160 bytes = 20 ms.

Table-driven with numpy: decoding is a 256-entry lookup and encoding a 64 Ki-entry lookup
indexed by the 16-bit sample, so a 20 ms frame costs two vectorised indexing operations.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000  # 160
SILENCE_BYTE = 0xFF  # µ-law code for 0

_BIAS = 0x84
_CLIP = 32635


def _build_decode() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_encode() -> npt.NDArray[np.uint8]:
    samples = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(samples < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(samples), _CLIP) + _BIAS
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return np.asarray(codes, dtype=np.uint8)


_DECODE = _build_decode()
_ENCODE = _build_encode()


def ulaw_to_pcm16(data: bytes) -> npt.NDArray[np.int16]:
    """µ-law bytes → signed 16-bit samples."""
    decoded: npt.NDArray[np.int16] = _DECODE[np.frombuffer(data, dtype=np.uint8)]
    return decoded


def pcm16_to_ulaw(samples: npt.NDArray[np.int16]) -> bytes:
    """Signed 16-bit samples → µ-law bytes."""
    index = samples.astype(np.int32) + 32768
    return bytes(_ENCODE[index].tobytes())


def frames(data: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    """Split µ-law audio into 20 ms frames, padding the last one with silence."""
    out = [data[i : i + size] for i in range(0, len(data), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1] + bytes([SILENCE_BYTE]) * (size - len(out[-1]))
    return out
