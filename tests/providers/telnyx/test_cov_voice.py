"""Which voice a Telnyx `speak` uses when it comes from the TTS block, and the engine fields of a
`transcription_start` (Deepgram where the language allows, Google's defaults elsewhere)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import merge
from voice_call.config import Config, parse_config
from voice_call.models import CallRecord, Direction, Mode
from voice_call.providers.telnyx.voice import (
    DEEPGRAM_MODEL,
    listening_fields,
    voice_and_language,
)
from voice_call.security.signatures import telnyx as signatures

_, PUBLIC_B64 = signatures.generate_keypair()
APP_NUMBER = "+15550001000"


def config(**overrides: Any) -> Config:
    raw = {
        "provider": "telnyx",
        "fromNumber": APP_NUMBER,
        "telnyx": {"apiKey": "KEY", "connectionId": "conn", "publicKey": PUBLIC_B64},
    }
    return parse_config(merge(raw, overrides), env={})


CALL = CallRecord(
    provider="telnyx",
    direction=Direction.OUTBOUND,
    mode=Mode.CONVERSATION,
    from_number=APP_NUMBER,
    to_number="+15559990000",
    started_at=0,
)


@pytest.mark.parametrize(
    ("tts_voice", "telnyx_voice"),
    [
        ("alloy", "AWS.Polly.Joanna-Neural"),  # an OpenAI voice, mapped as for Twilio
        ("Polly.Brian", "AWS.Polly.Brian"),  # Twilio's spelling of a Polly voice
        ("Azure.en-US-JennyNeural", "Azure.en-US-JennyNeural"),  # already a Telnyx voice
        ("male", "male"),
        ("  Telnyx.KokoroTTS.af  ", "Telnyx.KokoroTTS.af"),
        ("21m00Tcm4TlvDq8ikWAM", "female"),  # another engine's id: Telnyx would refuse it
    ],
)
def test_the_tts_voice_is_sent_as_a_telnyx_voice_or_not_at_all(
    tts_voice: str, telnyx_voice: str
) -> None:
    chosen = config(tts={"provider": "openai", "providers": {"openai": {"voice": tts_voice}}})
    assert voice_and_language(chosen, CALL) == (telnyx_voice, "en-US")


def test_the_preferred_tts_provider_voice_wins_then_openai_then_the_others() -> None:
    both = {"openai": {"voice": "alloy"}, "espeak": {"voice": "male"}}
    assert (
        voice_and_language(config(tts={"provider": "espeak", "providers": both}), CALL)[0] == "male"
    )
    assert voice_and_language(config(tts={"providers": both}), CALL)[0] == (
        "AWS.Polly.Joanna-Neural"
    )
    blank = {"openai": {"voice": "  "}, "espeak": {"voice": "Polly.Amy"}}
    assert voice_and_language(config(tts={"providers": blank}), CALL)[0] == "AWS.Polly.Amy"


def test_the_telnyx_block_voice_beats_the_tts_voice() -> None:
    chosen = config(
        telnyx={"voice": "Telnyx.NaturalHD.astra", "language": "de-DE"},
        tts={"providers": {"openai": {"voice": "alloy"}}},
    )
    assert voice_and_language(chosen, CALL) == ("Telnyx.NaturalHD.astra", "de-DE")


def test_deepgram_languages_get_the_end_of_speech_setting() -> None:
    fields = listening_fields("fr", 800, interim=False)
    assert fields == {
        "transcription_engine": "Deepgram",
        "transcription_engine_config": {
            "transcription_engine": "Deepgram",
            "transcription_model": DEEPGRAM_MODEL,
            "language": "fr",
            "utterance_end_ms": 1000,  # 0.8 s rounds to 1 s, Deepgram's floor
        },
    }
    engine = listening_fields("en", 9000, interim=True)["transcription_engine_config"]
    assert isinstance(engine, dict)
    assert engine["utterance_end_ms"] == 5000  # held to Deepgram's 5 s ceiling
    assert engine["interim_results"] is True


def test_other_languages_stay_on_google_with_no_engine_fields() -> None:
    assert listening_fields("ja", 800, interim=False) == {}
    assert listening_fields("ja", 800, interim=True) == {"interim_results": True}


def test_a_tts_block_without_a_usable_voice_leaves_the_default() -> None:
    assert voice_and_language(config(tts={"provider": "espeak"}), CALL) == ("female", "en-US")
    no_voice = {"espeak": {"rate": 200}}
    assert voice_and_language(config(tts={"providers": no_voice}), CALL)[0] == "female"
