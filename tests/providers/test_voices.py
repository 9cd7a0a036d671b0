"""The one table of Polly voices that stand in for OpenAI's on every carrier."""

from __future__ import annotations

from voice_call.providers.voices import OPENAI_TO_POLLY, polly_voice


def test_polly_voice_for_each_openai_voice() -> None:
    assert polly_voice("ALLOY") == "Joanna" and polly_voice("nova") == "Salli"
    assert polly_voice("Polly.Joanna") is None
    assert set(OPENAI_TO_POLLY) == {"alloy", "echo", "fable", "onyx", "nova", "shimmer"}
