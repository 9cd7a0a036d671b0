"""The `tts` block and each `numbers[…].tts` have a schema: an unknown key is an error with a
"did you mean" hint (by `config check` too), the plugin's `speakerVoice` / `speakerVoiceId`
names are accepted, and a `fallback` chain names engines that exist and have a key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.stack import Cli, base_env, write_config
from voice_call.config import ConfigError, parse_config, redacted

OPENCLAW = ("plugins", "entries", "voice-call", "config")


def errors_of(raw: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env=env or {})
    return caught.value.errors


def openclaw(config: dict[str, Any], core_tts: dict[str, Any]) -> dict[str, Any]:
    return {
        "plugins": {"entries": {"voice-call": {"config": config}}},
        "messages": {"tts": core_tts},
    }


def test_config_check_refuses_a_misspelt_tts_key_with_a_hint(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "voise.json5",
        {"tts": {"provider": "openai", "providers": {"openai": {"voise": "nova"}}}},
    )
    done = Cli(base_env(tmp_path), config).run("config", "check")
    assert done.returncode == 2, done.stdout
    assert "tts.providers.openai.voise: unknown key" in done.stderr
    assert "did you mean 'voice'?" in done.stderr


@pytest.mark.parametrize(
    ("tts", "error"),
    [
        (
            {"providers": {"openai": {"speakerVoise": "nova"}}},
            "tts.providers.openai.speakerVoise: unknown key — remove it or check its spelling"
            " (did you mean 'speakerVoice'?)",
        ),
        (
            {"providers": {"elevenlabs": {"voiceID": "x"}}},
            "tts.providers.elevenlabs.voiceID: unknown key — remove it or check its spelling"
            " (did you mean 'voiceId'?)",
        ),
        (
            {"timeoutMS": 3000},
            "tts.timeoutMS: unknown key — remove it or check its spelling"
            " (did you mean 'timeoutMs'?)",
        ),
        (
            {"providers": {"elevenlabs": {"voiceSettings": {"similarityBost": 0.5}}}},
            "tts.providers.elevenlabs.voiceSettings.similarityBost: unknown key — remove it or"
            " check its spelling (did you mean 'similarityBoost'?)",
        ),
        (
            {"providers": {"opneai": {"voice": "nova"}}},
            'tts.providers.opneai: not an engine that speaks on calls (did you mean "openai"?)'
            ' — use one of "openai", "elevenlabs", "deepgram", "cartesia", "espeak", "fake"',
        ),
        (
            {"providers": {"edge": {"voice": "en-US-AriaNeural"}}},
            "tts.providers.edge: Edge TTS cannot speak on calls (a phone line needs raw PCM)"
            " — remove this block (OpenClaw's messages.tts may keep it for chat)",
        ),
        (
            {"providers": {"openai": {"speed": "fast"}}},
            'tts.providers.openai.speed: expected a number, got "fast"'
            " — write a number without quotes",
        ),
        (
            {"providers": {"elevenlabs": {"outputFormat": "mp3_44100_128"}}},
            "tts.providers.elevenlabs.outputFormat: must be one of",
        ),
    ],
)
def test_unknown_or_wrong_tts_keys_are_errors(tts: dict[str, Any], error: str) -> None:
    [message] = errors_of({"tts": tts})
    assert message.startswith(error), message


def test_legacy_shape_typo_is_an_error_too() -> None:
    # `tts.openai` is migrated to `tts.providers.openai` (with a warning) before validation.
    [message] = errors_of({"tts": {"openai": {"voise": "nova"}}})
    assert message.startswith("tts.providers.openai.voise: unknown key")
    assert "did you mean 'voice'?" in message


def test_a_number_route_tts_is_checked_the_same_way() -> None:
    [message] = errors_of(
        {"numbers": {"+15550001111": {"tts": {"providers": {"openai": {"v": 1}}}}}}
    )
    assert message.startswith('numbers["+15550001111"].tts.providers.openai.v: unknown key')


def test_speaker_voice_names_are_the_voice() -> None:
    config = parse_config(
        {
            "tts": {"providers": {"openai": {"speakerVoice": "nova"}}},
            "numbers": {
                "+15550001111": {"tts": {"providers": {"elevenlabs": {"speakerVoiceId": "v1"}}}}
            },
        },
        env={},
    )
    assert config.tts.layer() == {"providers": {"openai": {"voice": "nova"}}}
    route = config.numbers["+15550001111"].tts
    assert route is not None and route.layer() == {"providers": {"elevenlabs": {"voiceId": "v1"}}}
    assert redacted(config)["tts"] == {"providers": {"openai": {"voice": "nova"}}}


def test_voice_and_speaker_voice_together_are_ambiguous() -> None:
    assert errors_of({"tts": {"providers": {"openai": {"voice": "a", "speakerVoice": "b"}}}}) == [
        "tts.providers.openai.speakerVoice: the same setting as voice — keep only one of them"
    ]
    assert errors_of(
        {"tts": {"providers": {"elevenlabs": {"voiceId": "a", "speakerVoiceId": "b"}}}}
    ) == [
        "tts.providers.elevenlabs.speakerVoiceId: the same setting as voiceId"
        " — keep only one of them"
    ]


# --- the fallback chain ----------------------------------------------------------------------


def test_fallback_names_known_engines() -> None:
    [message] = errors_of({"tts": {"fallback": ["espek"]}})
    assert message == (
        'tts.fallback[0]: must be one of "openai", "elevenlabs", "deepgram", "cartesia", "espeak"'
        ' or "fake", got "espek" — did you mean "espeak"?'
    )
    [twice] = errors_of({"tts": {"provider": "espeak", "fallback": ["fake", "espeak"]}})
    assert twice.startswith('tts.fallback: names "espeak" twice')


def test_a_fallback_engine_needs_a_key() -> None:
    raw = {"tts": {"provider": "fake", "fallback": ["espeak", "elevenlabs"]}}
    assert errors_of(raw) == [
        'tts.fallback[1]: "elevenlabs" has no API key — set tts.providers.elevenlabs.apiKey,'
        " or elevenlabsApiKey / ELEVENLABS_API_KEY"
    ]
    route = {"numbers": {"+15550001111": {"tts": {"fallback": ["openai"]}}}}
    assert errors_of(route) == [
        'numbers["+15550001111"].tts.fallback[0]: "openai" has no API key — set'
        ' numbers["+15550001111"].tts.providers.openai.apiKey, or openaiApiKey / OPENAI_API_KEY'
    ]
    # the same places the provider's key comes from: the block, the top level, the environment,
    # OpenClaw's messages.tts
    keyed = {"tts": {**raw["tts"], "providers": {"elevenlabs": {"apiKey": "el"}}}}
    assert parse_config(keyed, env={}).tts.fallback == ["espeak", "elevenlabs"]
    assert parse_config({**raw, "elevenlabsApiKey": "el"}, env={}).tts.fallback
    assert parse_config(raw, env={"ELEVENLABS_API_KEY": "el"}).tts.fallback
    core = {"providers": {"elevenlabs": {"apiKey": "el"}}}
    assert parse_config(openclaw(raw, core), env={}).tts.fallback


def test_config_check_refuses_a_fallback_without_a_key(tmp_path: Path) -> None:
    config = write_config(tmp_path / "chain.json5", {"tts": {"fallback": ["elevenlabs"]}})
    done = Cli(base_env(tmp_path), config).run("config", "check")
    assert done.returncode == 2
    assert 'tts.fallback[0]: "elevenlabs" has no API key' in done.stderr


def test_every_documented_tts_key_loads() -> None:
    full = {
        "provider": "elevenlabs",
        "fallback": ["openai", "espeak", "fake"],
        "timeoutMs": 6000,
        "providers": {
            "openai": {
                "apiKey": "sk",
                "baseUrl": "https://api.openai.com/v1",
                "model": "gpt-4o-mini-tts",
                "speakerVoice": "coral",
                "speed": 1.1,
                "instructions": "Warm and brief.",
            },
            "elevenlabs": {
                "apiKey": "el",
                "baseUrl": "https://api.elevenlabs.io",
                "voiceId": "21m00Tcm4TlvDq8ikWAM",
                "modelId": "eleven_flash_v2_5",
                "outputFormat": "ulaw_8000",
                "voiceSettings": {
                    "stability": 0.5,
                    "similarityBoost": 0.75,
                    "style": 0,
                    "useSpeakerBoost": True,
                    "speed": 1,
                },
            },
            "espeak": {"command": "espeak-ng", "voice": "en-gb", "rate": 160},
            "fake": {"rate": 16000, "msPerChar": 30, "firstChunkMs": 0, "chunkMs": 40},
        },
    }
    config = parse_config({"tts": full}, env={})
    assert config.tts.provider == "elevenlabs" and config.tts.timeout_ms == 6000
    assert config.tts.layer()["providers"]["openai"]["voice"] == "coral"
