"""Text-to-speech for calls: every engine yields raw audio chunks (`TtsAudio`) as they come."""

from voice_call.speech.tts.base import TtsAudio, TtsEngine, TtsError, TtsUnavailable

__all__ = ["TtsAudio", "TtsEngine", "TtsError", "TtsUnavailable"]
