"""The simulated callee's audio: espeak-ng's rendering at 8 kHz µ-law when it is installed (here
a stand-in `espeak-ng` on PATH that writes a known WAV), else the deterministic signal."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from voice_call.audio.g711 import SAMPLE_RATE
from voice_call.sim.voice import espeak_speech, speech_audio, synthetic_speech

# writes 0.5 s of a 440 Hz tone at 22,050 Hz, espeak-ng's own rate, as `--stdout` does
FAKE_ESPEAK = """\
import io, math, struct, sys, wave
if "{fail}":
    sys.exit(1)
rate = 22050
frames = b"".join(
    struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate))) for n in range(rate // 2)
)
out = io.BytesIO()
with wave.open(out, "wb") as writer:
    writer.setnchannels(1)
    writer.setsampwidth(2)
    writer.setframerate(rate)
    writer.writeframes(frames)
sys.stdout.buffer.write({payload})
"""


def install_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **how: str) -> None:
    script = tmp_path / "espeak-ng"
    body = FAKE_ESPEAK.format(
        fail=how.get("fail", ""), payload=how.get("payload", "out.getvalue()")
    )
    script.write_text(f"#!{sys.executable}\n{body}")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")


def test_espeak_output_is_resampled_to_8khz_ulaw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_espeak(tmp_path, monkeypatch)
    audio = espeak_speech("hello")
    assert audio is not None
    assert len(audio) == SAMPLE_RATE // 2  # 0.5 s at 8 kHz, one µ-law byte a sample
    assert len(set(audio)) > 20  # a tone, not silence
    assert speech_audio("hello") == audio


@pytest.mark.parametrize("how", [{"fail": "yes"}, {"payload": "b'not a wav file'"}])
def test_a_failing_espeak_falls_back_to_the_synthetic_voice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: dict[str, str]
) -> None:
    install_espeak(tmp_path, monkeypatch, **how)
    assert espeak_speech("hello") is None
    assert speech_audio("hello") == synthetic_speech("hello")


def test_without_espeak_or_when_not_preferred_the_synthetic_voice_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing named espeak-ng here
    assert espeak_speech("hi") is None
    install_espeak(tmp_path, monkeypatch)
    assert speech_audio("hi", prefer_espeak=False) == synthetic_speech("hi")


def test_the_synthetic_voice_is_deterministic_and_paced_by_characters() -> None:
    per_char = SAMPLE_RATE * 90 // 1000
    assert synthetic_speech("ab") == synthetic_speech("ab")
    assert synthetic_speech("ab") != synthetic_speech("ba")
    assert len(synthetic_speech("ab")) == 2 * per_char
    assert len(synthetic_speech("a b")) == 2 * per_char + per_char // 2  # a space is a pause
    assert len(synthetic_speech("")) == per_char // 2  # empty text: a short silence
