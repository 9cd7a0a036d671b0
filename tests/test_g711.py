"""G.711 µ-law against the textbook algorithm, plus framing."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from voice_call.media.g711 import FRAME_BYTES, SILENCE_BYTE, frames, pcm16_to_ulaw, ulaw_to_pcm16


def reference_encode(sample: int) -> int:
    """The ITU-T G.711 µ-law encoder, one sample at a time, written plainly."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = 7
    for exp in range(8):
        if magnitude < (0x100 << exp):
            exponent = exp
            break
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def test_decode_known_values() -> None:
    pcm = ulaw_to_pcm16(bytes([0xFF, 0x7F, 0x00, 0x80]))
    assert pcm.tolist() == [0, 0, -32124, 32124]


def test_every_code_round_trips() -> None:
    codes = bytes(range(256))
    back = pcm16_to_ulaw(ulaw_to_pcm16(codes))
    # +0 and -0 both decode to 0, which encodes as +0 (0xFF)
    assert [i for i in range(256) if back[i] != codes[i]] == [0x7F]


@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=400))
def test_encoder_matches_reference(samples: list[int]) -> None:
    encoded = pcm16_to_ulaw(np.array(samples, dtype=np.int16))
    assert list(encoded) == [reference_encode(s) for s in samples]


def test_quantisation_error_is_bounded() -> None:
    samples = np.arange(-32000, 32000, 7, dtype=np.int16)
    decoded = ulaw_to_pcm16(pcm16_to_ulaw(samples)).astype(np.int32)
    error = np.abs(decoded - samples.astype(np.int32))
    assert (error <= np.maximum(16, np.abs(samples.astype(np.int32)) // 16)).all()


def test_frames_pad_the_last_frame_with_silence() -> None:
    chunks = frames(b"\x00" * (FRAME_BYTES + 10))
    assert [len(c) for c in chunks] == [FRAME_BYTES, FRAME_BYTES]
    assert chunks[1][10:] == bytes([SILENCE_BYTE]) * (FRAME_BYTES - 10)
    assert frames(b"") == []
