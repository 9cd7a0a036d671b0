"""The language table (languages.py) and what the config and the prompt make of it."""

from __future__ import annotations

import pytest

from voice_call.agent.prompt import instructions
from voice_call.config import ConfigError, parse_config
from voice_call.languages import listen_code, lookup, speak_code
from voice_call.models import CallRecord, Direction, Mode
from voice_call.realtime.factory import RealtimeFactory
from voice_call.speech.stack import SpeechStack, stt_settings

TWILIO = {"provider": "twilio", "fromNumber": "+15550001000"}
KEYS = {"accountSid": "AC" + "0" * 32, "authToken": "t" * 32}


@pytest.mark.parametrize("tag", ["zh-TW", "zh_tw", "cmn-Hant-TW", "zh-Hant-TW", "cmn-TW"])
def test_usual_spellings_of_taiwan_mandarin_are_one_language(tag: str) -> None:
    language = lookup(tag)
    assert language is not None and language.tag == "zh-TW"
    assert language.stt == "zh" and language.espeak_voice == "cmn"


def test_each_carrier_spells_zh_tw_its_own_way() -> None:
    assert (speak_code("zh-TW", "twilio"), listen_code("zh-TW", "twilio")) == ("cmn-TW", "zh-TW")
    assert (speak_code("zh-TW", "telnyx"), listen_code("zh-TW", "telnyx")) == ("cmn-CN", "zh-TW")
    assert (speak_code("zh-TW", "plivo"), listen_code("zh-TW", "plivo")) == ("cmn-CN", "zh-TW")


def test_a_language_outside_the_table_is_passed_on_as_written() -> None:
    assert speak_code("en-GB", "twilio") == listen_code("en-GB", "plivo") == "en-GB"


def test_language_defaults_to_en_us() -> None:
    assert parse_config({}, env={}).language == "en-US"


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({**TWILIO, "language": "zh-TW", "twilio": {**KEYS, "voice": "Polly.Joanna"}}, "twilio"),
        ({**TWILIO, "language": "zh-TW", "twilio": {**KEYS, "voice": "alloy"}}, "twilio"),
        ({**TWILIO, "language": "zh-TW", "twilio": {**KEYS, "voice": "Polly.Zhiyu"}}, "twilio"),
        (
            {**TWILIO, "twilio": {**KEYS, "language": "zh-TW", "voice": "Google.en-US-Standard-C"}},
            "twilio",
        ),
        (
            {
                **TWILIO,
                "twilio": KEYS,
                "numbers": {"+15550001000": {"language": "zh-TW", "voice": "Polly.Amy"}},
            },
            "numbers",
        ),
        (
            {
                "provider": "plivo",
                "fromNumber": "+15550001000",
                "language": "zh-TW",
                "plivo": {"authId": "MA" + "0" * 18, "authToken": "t" * 32, "voice": "WOMAN"},
            },
            "plivo",
        ),
    ],
)
def test_a_voice_that_cannot_speak_the_language_is_a_config_error(
    raw: dict[str, object], where: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env={})
    errors = [e for e in caught.value.errors if "cannot speak zh-TW" in e]
    assert len(errors) == 1 and errors[0].startswith(where)


def test_a_voice_that_speaks_it_is_accepted() -> None:
    raw = {**TWILIO, "language": "zh-TW", "twilio": {**KEYS, "voice": "Google.cmn-TW-Wavenet-A"}}
    assert parse_config(raw, env={}).language == "zh-TW"


def _call() -> CallRecord:
    return CallRecord(
        call_id="c1",
        provider="mock",
        direction=Direction.OUTBOUND,
        from_number="+15550001000",
        to_number="+15550002000",
        mode=Mode.CONVERSATION,
        started_at=0.0,
    )


def test_the_prompt_asks_for_traditional_chinese_on_a_zh_tw_call() -> None:
    config = parse_config({"language": "zh-TW"}, env={})
    prompt = instructions(config, _call())
    assert "Traditional Chinese" in prompt and "Taiwan" in prompt
    assert "Traditional Chinese" not in instructions(parse_config({}, env={}), _call())


def test_speech_to_text_is_told_to_hear_mandarin() -> None:
    raw = {"language": "zh-TW", "openaiApiKey": "sk", "deepgramApiKey": "dg"}
    config = parse_config(raw, env={})
    assert stt_settings(config, "openai").language == "zh"
    assert stt_settings(config, "deepgram").language == "zh-TW"
    english = parse_config({"openaiApiKey": "sk"}, env={})
    assert stt_settings(english, "openai").language is None  # detected, as before
    # a language set in the streaming block wins
    raw["streaming"] = {"providers": {"openai": {"language": "en"}}}
    assert stt_settings(parse_config(raw, env={}), "openai").language == "en"


def test_speech_engines_take_a_voice_or_model_that_speaks_mandarin() -> None:
    espeak = {"command": "true"}  # found on PATH: espeak-ng itself need not be installed
    tts = {"provider": "espeak", "providers": {"espeak": espeak}, "fallback": ["elevenlabs"]}
    raw = {"language": "zh-TW", "elevenlabsApiKey": "el", "openaiApiKey": "sk", "tts": tts}
    settings = SpeechStack(parse_config(raw, env={}))._settings(None)
    assert settings.options["voice"] == "cmn"  # espeak-ng's Mandarin voice
    assert settings.fallback[0].options["modelId"] == "eleven_multilingual_v2"
    english = SpeechStack(parse_config({**raw, "language": "en-US"}, env={}))
    assert "voice" not in english._settings(None).options


def test_the_realtime_session_is_told_to_answer_in_traditional_chinese() -> None:
    config = parse_config({"language": "zh-TW", "openaiApiKey": "sk"}, env={})
    setup = RealtimeFactory(config, consult=False, env={}).setup(None)
    assert setup.instructions.endswith(
        "Always answer in Traditional Chinese (Mandarin as spoken in Taiwan), never Simplified."
    )
