"""The fake Realtime transcription session's config: updates in both dialects, validated field
by field with the real API's error codes and `param` paths, rendered back in either dialect."""

from __future__ import annotations

from typing import Any

import pytest

from voice_call.sim.openai.realtime_config import ClientEventError, SessionConfig


def refused(apply: Any, session: Any) -> tuple[str | None, str | None]:
    with pytest.raises(ClientEventError) as caught:
        apply(session)
    return caught.value.code, caught.value.param


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ([], "invalid_type", "session"),
        ({"input_audio_format": "mp3"}, "invalid_value", "session.input_audio_format"),
        (
            {"input_audio_transcription": "whisper-1"},
            "invalid_type",
            "session.input_audio_transcription",
        ),
        (
            {"input_audio_transcription": {"model": 1}},
            "invalid_type",
            "session.input_audio_transcription.model",
        ),
        ({"turn_detection": {"type": "none"}}, "invalid_value", "session.turn_detection.type"),
        (
            {"turn_detection": {"threshold": 1.5}},
            "invalid_value",
            "session.turn_detection.threshold",
        ),
        (
            {"turn_detection": {"silence_duration_ms": 0.5}},
            "invalid_value",
            "session.turn_detection.silence_duration_ms",
        ),
        (
            {"turn_detection": {"prefix_padding_ms": 20_000}},
            "invalid_value",
            "session.turn_detection.prefix_padding_ms",
        ),
        (
            {"input_audio_noise_reduction": "near"},
            "invalid_type",
            "session.input_audio_noise_reduction",
        ),
        ({"include": "logprobs"}, "invalid_type", "session.include"),
    ],
)
def test_bad_beta_updates_are_refused_with_the_real_codes(
    session: Any, code: str, param: str
) -> None:
    config = SessionConfig()
    before = config.render("beta", "s", 0)
    assert refused(config.apply_beta, session) == (code, param)
    assert config.render("beta", "s", 0) == before  # a refused update changes nothing


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({}, "missing_required_parameter", "session.type"),
        ({"type": "realtime"}, "invalid_value", "session.type"),
        ({"type": "transcription", "audio": ["pcm"]}, "invalid_type", "session.audio"),
        ({"type": "transcription", "audio": {"input": 3}}, "invalid_type", "session.audio.input"),
        (
            {"type": "transcription", "audio": {"input": {"format": "pcm"}}},
            "invalid_type",
            "session.audio.input.format",
        ),
        (
            {"type": "transcription", "audio": {"input": {"format": {"type": "audio/mp3"}}}},
            "invalid_value",
            "session.audio.input.format.type",
        ),
        (
            {
                "type": "transcription",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
            },
            "invalid_value",
            "session.audio.input.format.rate",
        ),
        (
            {"type": "transcription", "audio": {"input": {"noise_reduction": 1}}},
            "invalid_type",
            "session.audio.input.noise_reduction",
        ),
    ],
)
def test_bad_ga_updates_are_refused_with_the_real_codes(
    session: Any, code: str, param: str
) -> None:
    assert refused(SessionConfig().apply_ga, session) == (code, param)


def test_a_beta_update_merges_into_the_session_and_renders_in_both_dialects() -> None:
    config = SessionConfig()
    config.apply_beta(
        {
            "input_audio_format": "g711_ulaw",
            "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"},
            "turn_detection": {"type": "semantic_vad", "silence_duration_ms": 800},
            "input_audio_noise_reduction": {"type": "near_field"},
            "include": ["item.input_audio_transcription.logprobs"],
        }
    )
    config.apply_beta({"input_audio_transcription": {"prompt": "names"}})  # merges, not replaces
    beta = config.render("beta", "sess_1", 99)
    assert beta["input_audio_format"] == "g711_ulaw"
    assert beta["input_audio_transcription"] == {
        "model": "gpt-4o-transcribe",
        "language": "en",
        "prompt": "names",
    }
    assert beta["turn_detection"] == {
        "type": "semantic_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 800,
    }
    vad = config.vad()
    assert vad is not None and vad.silence_duration_ms == 800
    ga = config.render("ga", "sess_1", 99)
    assert ga["type"] == "transcription" and ga["id"] == "sess_1" and ga["expires_at"] == 99
    assert ga["audio"]["input"]["format"] == {"type": "audio/pcmu"}  # no rate but for PCM
    assert ga["audio"]["input"]["noise_reduction"] == {"type": "near_field"}
    assert ga["include"] == ["item.input_audio_transcription.logprobs"]


def test_a_ga_update_sets_format_and_fields_and_null_switches_them_off() -> None:
    config = SessionConfig()
    config.apply_ga(
        {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": {"model": "whisper-1"},
                    "turn_detection": {"threshold": 0.7, "prefix_padding_ms": None},
                }
            },
        }
    )
    ga = config.render("ga", "s", 0)
    assert ga["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert ga["audio"]["input"]["transcription"]["model"] == "whisper-1"
    assert ga["audio"]["input"]["turn_detection"]["threshold"] == 0.7
    assert ga["audio"]["input"]["turn_detection"]["prefix_padding_ms"] == 300  # null: kept
    config.apply_ga(
        {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcma"},
                    "transcription": None,
                    "turn_detection": None,
                    "noise_reduction": None,
                }
            },
            "include": None,
        }
    )
    assert config.vad() is None
    assert config.transcription is None and config.include is None
    assert config.render("beta", "s", 0)["input_audio_format"] == "g711_alaw"
    config.apply_ga({"type": "transcription"})  # nothing to change: nothing changes
    assert config.audio_format == "g711_alaw"


def test_turn_detection_switched_off_then_on_starts_from_the_defaults() -> None:
    config = SessionConfig()
    config.apply_beta({"turn_detection": None})
    config.apply_beta({"turn_detection": {"silence_duration_ms": 200}})
    assert config.turn_detection == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 200,
    }
