"""G.711 µ-law and A-law against the ITU-T G.191 reference, on every input and every code.

The reference functions below transliterate `g711.c` of the ITU-T Software Tool Library
(`ulaw_compress`, `ulaw_expand`, `alaw_compress`, `alaw_expand`) one sample at a time, with C's
16-bit `short` arithmetic, so the table-driven codec is checked against the algorithm itself and
not against another vectorised formula.
"""

from __future__ import annotations

import numpy as np

from voice_call.audio.g711 import (
    ALAW_SILENCE_BYTE,
    FRAME_BYTES,
    SILENCE_BYTE,
    alaw_to_pcm16,
    frames,
    pcm16_to_alaw,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)

ALL_SAMPLES = list(range(-32768, 32768))


def ref_ulaw_compress(sample: int) -> int:
    absno = ((~sample) >> 2) + 33 if sample < 0 else (sample >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x0008 - segno
    low_nibble = 0x000F - ((absno >> segno) & 0x000F)
    code = (high_nibble << 4) | low_nibble
    if sample >= 0:
        code |= 0x0080
    return code & 0xFF


def ref_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x0080 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x0007
    segment = exponent + 1
    mantissa &= 0x000F
    step = 4 << segment
    return sign * ((0x0080 << exponent) + step * mantissa + step // 2 - 4 * 33)


def ref_alaw_compress(sample: int) -> int:
    ix = (~sample) >> 4 if sample < 0 else sample >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if sample >= 0:
        ix |= 0x0080
    return (ix ^ 0x0055) & 0xFF


def ref_alaw_expand(code: int) -> int:
    ix = (code ^ 0x0055) & 0x007F
    iexp = ix >> 4
    mant = ix & 0x000F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x0008
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


def test_ulaw_encoder_matches_the_reference_on_all_65536_inputs() -> None:
    encoded = pcm16_to_ulaw(np.array(ALL_SAMPLES, dtype=np.int16))
    assert list(encoded) == [ref_ulaw_compress(s) for s in ALL_SAMPLES]


def test_ulaw_decoder_matches_the_reference_on_all_256_codes() -> None:
    assert ulaw_to_pcm16(bytes(range(256))).tolist() == [ref_ulaw_expand(c) for c in range(256)]


def test_alaw_encoder_matches_the_reference_on_all_65536_inputs() -> None:
    encoded = pcm16_to_alaw(np.array(ALL_SAMPLES, dtype=np.int16))
    assert list(encoded) == [ref_alaw_compress(s) for s in ALL_SAMPLES]


def test_alaw_decoder_matches_the_reference_on_all_256_codes() -> None:
    assert alaw_to_pcm16(bytes(range(256))).tolist() == [ref_alaw_expand(c) for c in range(256)]


def test_known_values_of_the_standard() -> None:
    assert ulaw_to_pcm16(bytes([0xFF, 0x7F, 0x00, 0x80])).tolist() == [0, 0, -32124, 32124]
    assert alaw_to_pcm16(bytes([0xD5, 0x55, 0xAA, 0x2A])).tolist() == [8, -8, 32256, -32256]
    silence = np.zeros(3, dtype=np.int16)
    assert pcm16_to_ulaw(silence) == bytes([SILENCE_BYTE]) * 3
    assert pcm16_to_alaw(silence) == bytes([ALAW_SILENCE_BYTE]) * 3
    # The reference complements negatives (~x), unlike the "bias 132" textbook encoder: -4 is
    # still in the zero step (0x7F), where the textbook one gives 0x7E.
    assert pcm16_to_ulaw(np.array([-1, -4, -5], dtype=np.int16)) == bytes([0x7F, 0x7F, 0x7E])
    assert pcm16_to_alaw(np.array([-1, -16, -17], dtype=np.int16)) == bytes([0x55, 0x55, 0x54])


def test_every_code_round_trips_except_negative_zero() -> None:
    codes = bytes(range(256))
    ulaw_back = pcm16_to_ulaw(ulaw_to_pcm16(codes))
    # +0 and -0 both decode to 0, which encodes as +0 (0xFF)
    assert [i for i in range(256) if ulaw_back[i] != codes[i]] == [0x7F]
    assert pcm16_to_alaw(alaw_to_pcm16(codes)) == codes


def test_quantisation_error_is_within_half_a_step() -> None:
    samples = np.arange(-32000, 32000, 7, dtype=np.int16)
    wide = samples.astype(np.int32)
    for encode, decode in ((pcm16_to_ulaw, ulaw_to_pcm16), (pcm16_to_alaw, alaw_to_pcm16)):
        error = np.abs(decode(encode(samples)).astype(np.int32) - wide)
        assert (error <= np.maximum(16, np.abs(wide) // 16)).all()


def test_frames_pad_the_last_frame_with_silence() -> None:
    chunks = frames(b"\x00" * (FRAME_BYTES + 10))
    assert [len(c) for c in chunks] == [FRAME_BYTES, FRAME_BYTES]
    assert chunks[1][10:] == bytes([SILENCE_BYTE]) * (FRAME_BYTES - 10)
    assert frames(b"") == []


def test_strided_and_wider_integer_samples_encode_as_their_values() -> None:
    samples = np.array(ALL_SAMPLES[::7], dtype=np.int16)
    strided = np.repeat(samples, 2)[::2]  # a non-contiguous view of the same values
    assert not strided.flags["C_CONTIGUOUS"]
    assert pcm16_to_ulaw(strided) == pcm16_to_ulaw(samples)
    assert pcm16_to_alaw(strided) == pcm16_to_alaw(samples)
    wide = samples.astype(np.int32)
    assert pcm16_to_ulaw(wide) == bytes(ref_ulaw_compress(int(s)) for s in samples)
    assert pcm16_to_alaw(wide) == bytes(ref_alaw_compress(int(s)) for s in samples)
