"""Audio for the simulated callee's lines: espeak-ng when installed, else a deterministic signal.

Either way the result is 8 kHz µ-law, and the text travels alongside it (the fake speech-to-text
service reads the text, not the audio), so tests do not depend on what the machine has.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import wave

import numpy as np

from voice_call.audio.g711 import SAMPLE_RATE, pcm16_to_ulaw

SYLLABLE_MS = 90


def synthetic_speech(text: str) -> bytes:
    """A voice-like signal: one short vowel-ish tone per character, pitch from a hash of it."""
    samples_per = SAMPLE_RATE * SYLLABLE_MS // 1000
    t = np.arange(samples_per) / SAMPLE_RATE
    envelope = np.sin(np.pi * np.arange(samples_per) / samples_per)
    chunks = []
    for ch in text or " ":
        if ch.isspace():
            chunks.append(np.zeros(samples_per // 2))
            continue
        pitch = 110 + hashlib.sha256(ch.encode()).digest()[0] % 120
        tone = np.sin(2 * np.pi * pitch * t) + 0.4 * np.sin(2 * np.pi * 2.7 * pitch * t)
        chunks.append(envelope * tone)
    signal = np.concatenate(chunks) * 6000
    return pcm16_to_ulaw(signal.astype(np.int16))


def espeak_speech(text: str) -> bytes | None:
    """espeak-ng's rendering resampled to 8 kHz µ-law, or None when espeak-ng is absent."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    try:
        wav = subprocess.run(
            [exe, "--stdout", text], capture_output=True, check=True, timeout=10
        ).stdout
        with wave.open(io.BytesIO(wav)) as reader:
            rate = reader.getframerate()
            pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16)
    except (OSError, subprocess.SubprocessError, wave.Error):
        return None
    duration = len(pcm) / rate
    target = np.linspace(0, len(pcm) - 1, int(duration * SAMPLE_RATE))
    resampled = np.interp(target, np.arange(len(pcm)), pcm.astype(np.float64))
    return pcm16_to_ulaw(resampled.astype(np.int16))


def speech_audio(text: str, prefer_espeak: bool = True) -> bytes:
    return (espeak_speech(text) if prefer_espeak else None) or synthetic_speech(text)
