"""TwiML building (always escaped, always parseable), voice and language choice, and which
document each kind of Twilio request gets back."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_call.clock import RealClock
from voice_call.config import parse_config
from voice_call.models import Direction
from voice_call.providers.twilio.markup import Twiml, clean
from voice_call.providers.twilio.provider import TwilioProvider
from voice_call.providers.twilio.voice import map_voice, speech_for, tts_voice
from voice_call.providers.twilio.webhooks import Hook
from voice_call.providers.voices import CarrierVoice

SPEECH = CarrierVoice(voice="Polly.Joanna", language="en-US")


def config(**extra: Any) -> Any:
    raw: dict[str, Any] = {
        "provider": "twilio",
        "fromNumber": "+15550001000",
        "twilio": {"accountSid": "AC" + "2" * 32, "authToken": "t"},
        "publicUrl": "https://voice.example.com/voice/webhook",
    }
    raw.update(extra)
    return parse_config(raw, env={})


@settings(max_examples=300, deadline=None)
@given(text=st.text(), url=st.text())
def test_any_text_and_url_render_to_parseable_escaped_twiml(text: str, url: str) -> None:
    doc = Twiml()
    gather = doc.gather(url, SPEECH, 60, 2)
    doc.say(text, SPEECH, parent=gather).redirect(url)
    root = ET.fromstring(doc.render())
    assert root.tag == "Response"
    say = root.find("Gather/Say")
    assert say is not None and (say.text or "") == clean(text)
    assert root.find("Gather").get("action") == clean(url)  # type: ignore[union-attr]
    assert root.find("Gather").get("speechTimeout") == "2"  # type: ignore[union-attr]
    assert (root.find("Redirect").text or "") == clean(url)  # type: ignore[union-attr]


def test_markup_is_escaped_not_interpreted() -> None:
    doc = Twiml().say('</Say><Hangup/><Say voice="x">&amp;', SPEECH).render()
    assert "<Hangup" not in doc
    assert '&lt;/Say&gt;&lt;Hangup/&gt;&lt;Say voice="x"&gt;&amp;amp;' in doc
    assert clean("a\x00b\x1bc\ud800d\ufffe") == "abcd"


@pytest.mark.parametrize(
    ("name", "voice"),
    [
        (None, "Polly.Joanna"),
        ("alloy", "Polly.Joanna"),
        ("echo", "Polly.Matthew"),
        ("fable", "Polly.Amy"),
        ("ONYX", "Polly.Brian"),
        ("nova", "Polly.Salli"),
        ("shimmer", "Polly.Kimberly"),
        ("coral", "Polly.Joanna"),
        ("Polly.Vicki-Neural", "Polly.Vicki-Neural"),
        ("Google.en-US-Neural2-F", "Google.en-US-Neural2-F"),
        ("Alice", "alice"),
    ],
)
def test_voice_mapping(name: str | None, voice: str) -> None:
    assert map_voice(name) == voice


def test_tts_voice_paths() -> None:
    assert tts_voice({"provider": "openai", "providers": {"openai": {"voice": "echo"}}}) == "echo"
    assert tts_voice({"openai": {"voice": "fable"}}) == "fable"
    assert tts_voice({"provider": "elevenlabs", "elevenlabs": {"voice": "x"}}) == "x"
    assert tts_voice({"voice": "onyx"}) == "onyx"
    assert tts_voice({}) is None and tts_voice(None) is None


def test_speech_per_call_and_per_route() -> None:
    cfg = config(
        twilio={"accountSid": "AC" + "2" * 32, "authToken": "t", "language": "de-DE"},
        tts={"providers": {"openai": {"voice": "echo"}}},
        numbers={
            "+15550001000": {"voice": "Polly.Amy", "language": "en-GB"},
            "+15550004000": {"tts": {"openai": {"voice": "nova"}}},
        },
    )
    assert speech_for(cfg, Direction.OUTBOUND, "+15550001000", None) == CarrierVoice(
        "Polly.Matthew", "de-DE"
    )  # routes are for inbound calls only
    assert speech_for(cfg, Direction.INBOUND, "+1 555 000 1000", None) == CarrierVoice(
        "Polly.Amy", "en-GB"
    )  # digits-only match
    assert speech_for(cfg, Direction.INBOUND, "+15559999999", "+15550004000") == CarrierVoice(
        "Polly.Salli", "de-DE"
    )
    bare = config()
    assert speech_for(bare, Direction.INBOUND, None, None) == CarrierVoice("Polly.Joanna", "en-US")


def provider() -> TwilioProvider:
    return TwilioProvider(config(), RealClock())


def hook(kind: str, **params: str) -> Hook:
    return Hook(kind=kind, params=params, call_id="c1", turn_token="tok")


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


@pytest.mark.parametrize(
    ("kind", "outcomes", "expected"),
    [
        ("status", ["applied"], "<Response />"),
        ("inbound", ["rejected: caller not in allowFrom", "applied"], '<Reject reason="rejected"'),
        ("gather", ["unknown-call"], "<Response />"),
        ("voice", [], "<Response />"),
        ("voice", ["ignored: call already ended"], "<Hangup />"),
        ("voice", ["applied"], '<Pause length="20" />'),
        ("hold", ["duplicate"], '<Pause length="20" />'),
        ("gather", ["applied: stale turn token"], '<Pause length="5" />'),
        ("reprompt", ["applied"], "<Gather "),
        ("inbound", ["accepted"], "<Redirect "),
    ],
)
def test_reply_for_each_request(kind: str, outcomes: list[str], expected: str) -> None:
    assert expected in provider().reply(hook(kind, CallStatus="in-progress"), outcomes)


def test_replies_keep_the_turn_and_the_call() -> None:
    twiml = provider()
    after_answer = ET.fromstring(twiml.reply(hook("gather"), ["applied"]))
    listen = query_of(after_answer.find("Redirect").text or "")  # type: ignore[union-attr]
    assert listen["type"] == ["listen"] and listen["turnToken"] == ["tok"]
    assert listen["callId"] == ["c1"]
    again = ET.fromstring(twiml.reply(hook("listen"), ["applied"]))
    action = query_of(again.find("Gather").get("action") or "")  # type: ignore[union-attr]
    assert action["type"] == ["gather"] and action["turnToken"] == ["tok"]
    # every document's URLs are fresh, so no two requests look alike to the replay cache
    first, second = (twiml.reply(hook("voice"), ["applied"]) for _ in range(2))
    assert first != second
    # a voicemail detected on this very request ends the call at Twilio too
    assert "<Hangup />" in twiml.reply(hook("voice"), ["applied"], ended_here=True)
