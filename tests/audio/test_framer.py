"""The 20 ms framer: whole frames out, nothing lost, the tail padded with silence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from voice_call.audio.framer import Framer
from voice_call.audio.g711 import FRAME_BYTES, SILENCE_BYTE


@given(st.lists(st.binary(max_size=700), max_size=30))
def test_framer_emits_whole_frames_and_loses_nothing(chunks: list[bytes]) -> None:
    framer = Framer()
    out = [frame for chunk in chunks for frame in framer.push(chunk)]
    assert all(len(frame) == FRAME_BYTES for frame in out)
    data = b"".join(chunks)
    assert b"".join(out) == data[: len(data) - len(data) % FRAME_BYTES]
    assert framer.pending == len(data) % FRAME_BYTES
    tail = framer.flush()
    if len(data) % FRAME_BYTES:
        assert tail is not None and len(tail) == FRAME_BYTES
        rest = len(data) % FRAME_BYTES
        assert tail == data[-rest:] + bytes([SILENCE_BYTE]) * (FRAME_BYTES - rest)
    else:
        assert tail is None
    assert framer.flush() is None and framer.pending == 0
