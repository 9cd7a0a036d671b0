"""`streaming.providers.<id>`: one block per speech-to-text provider this version runs, with the
keys it reads; another id, an unknown key or a value out of range is an error at load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.stack import Cli, base_env, write_config
from voice_call.config import ConfigError, parse_config
from voice_call.speech.stack import stt_settings


def errors_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env={})
    return caught.value.errors


def test_an_unknown_provider_id_is_refused_with_the_list() -> None:
    known = '"openai", "deepgram", "elevenlabs", "fake"'
    assert errors_of({"streaming": {"providers": {"assemblyai": {"apiKey": "aai"}}}}) == [
        f"streaming.providers.assemblyai: not a speech-to-text provider — use one of {known}"
    ]
    assert errors_of({"streaming": {"providers": {"opanai": {}}}}) == [
        'streaming.providers.opanai: not a speech-to-text provider (did you mean "openai"?)'
        f" — use one of {known}"
    ]


@pytest.mark.parametrize(
    ("block", "error"),
    [
        (
            {"silenceDuration": 500},
            "streaming.providers.openai.silenceDuration: unknown key — remove it or check its"
            " spelling (did you mean 'silenceDurationMs'?)",
        ),
        (
            {"vadThreshold": 3},
            "streaming.providers.openai.vadThreshold: must be at most 1.0, got 3"
            " — use a smaller number",
        ),
        (
            {"silenceDurationMs": "800"},
            'streaming.providers.openai.silenceDurationMs: expected a whole number, got "800"',
        ),
        ({"api": "v2"}, 'streaming.providers.openai.api: must be one of "ga" or "beta"'),
        (
            {"url": "https://api.openai.com/v1/realtime"},
            'streaming.providers.openai.url: "https://api.openai.com/v1/realtime" is not a'
            " WebSocket URL",
        ),
    ],
)
def test_openai_block_keys_are_checked(block: dict[str, Any], error: str) -> None:
    [message] = errors_of({"streaming": {"providers": {"openai": block}}})
    assert message.startswith(error), message


def test_config_check_refuses_a_misspelt_streaming_key(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "stt.json5", {"streaming": {"providers": {"openai": {"vadTreshold": 0.4}}}}
    )
    done = Cli(base_env(tmp_path), config).run("config", "check")
    assert done.returncode == 2
    assert "streaming.providers.openai.vadTreshold: unknown key" in done.stderr
    assert "did you mean 'vadThreshold'?" in done.stderr


def test_every_key_reaches_the_transcription_settings() -> None:
    block = {
        "apiKey": "sk-stt",
        "url": "wss://example.test/v1/realtime?intent=transcription",
        "model": "gpt-4o-mini-transcribe",
        "language": "de",
        "prompt": "Names: Jörg, Anke.",
        "api": "beta",
        "vadThreshold": 0.3,
        "prefixPaddingMs": 200,
        "silenceDurationMs": 450,
    }
    config = parse_config({"streaming": {"enabled": True, "providers": {"openai": block}}}, env={})
    settings = stt_settings(config)
    assert (settings.api_key, settings.url, settings.model) == (
        "sk-stt",
        block["url"],
        "gpt-4o-mini-transcribe",
    )
    assert (settings.language, settings.prompt, settings.api) == ("de", block["prompt"], "beta")
    assert (settings.vad_threshold, settings.prefix_padding_ms, settings.silence_duration_ms) == (
        0.3,
        200,
        450,
    )
    fake = parse_config({"streaming": {"provider": "fake", "providers": {"fake": {}}}}, env={})
    assert stt_settings(fake) is None


def test_legacy_streaming_keys_still_migrate_into_the_block() -> None:
    config = parse_config({"streaming": {"sttModel": "m", "silenceDurationMs": 500}}, env={})
    openai = config.streaming.providers.openai
    assert openai is not None and (openai.model, openai.silence_duration_ms) == ("m", 500)


def test_an_unknown_streaming_provider_is_refused_at_load() -> None:
    """`streaming.provider` used to pass `config check` and fail only when a stream started."""
    assert errors_of({"streaming": {"enabled": True, "provider": "deepgarm"}}) == [
        'streaming.provider: must be one of "openai", "deepgram", "elevenlabs" or "fake", got'
        ' "deepgarm" — did you mean "deepgram"?'
    ]
    assert parse_config({"streaming": {"provider": "fake"}}, env={}).streaming.provider == "fake"
