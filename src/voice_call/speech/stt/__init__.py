"""Streaming speech-to-text for calls: caller µ-law in, speech-start / partial / final out."""

from voice_call.speech.stt.base import SttError, SttListener, SttSession

__all__ = ["SttError", "SttListener", "SttSession"]
