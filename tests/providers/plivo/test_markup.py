"""Plivo XML is always escaped; callback URLs carry text losslessly and boundedly; voices."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_call.config import parse_config
from voice_call.models import CallRecord, Direction, Mode
from voice_call.numbers import our_route
from voice_call.providers.plivo import markup
from voice_call.providers.plivo.urls import (
    MAX_TEXT_BYTES,
    BadCallbackQuery,
    Callback,
    TextTooLong,
    callback_url,
    decode_text,
    encode_text,
    read_callback,
)
from voice_call.providers.plivo.voice import voice_for
from voice_call.providers.voices import CarrierVoice

VOICE = CarrierVoice("Polly.Amy", "en-GB")


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200), attr=st.text(max_size=40))
def test_any_text_makes_a_well_formed_document_that_says_it(text: str, attr: str) -> None:
    document = markup.speak(text, CarrierVoice(attr, attr), 1, f"https://x.test/?a={attr}")
    root = ET.fromstring(document)
    speak = root.find("Speak")
    assert speak is not None
    assert (speak.text or "") == markup.clean(text).replace("\r\n", "\n").replace("\r", "\n")
    assert speak.attrib["voice"] == markup.clean(attr)  # attributes escape \r \n \t too


def test_documents_have_the_verbs_plivo_runs() -> None:
    listen = markup.Listen("https://x.test/hook?flow=input&a=1", "en-GB", 30, "2")
    root = ET.fromstring(markup.listen(listen, "Say <it> & go", VOICE, "https://x.test/again"))
    get_input = root[0]
    assert get_input.tag == "GetInput"
    assert get_input.attrib == {
        "action": "https://x.test/hook?flow=input&a=1",
        "method": "POST",
        "inputType": "speech",
        "language": "en-GB",
        "executionTimeout": "30",
        "speechEndTimeout": "2",
        "redirect": "true",
    }
    assert [(c.tag, c.text) for c in get_input] == [("Speak", "Say <it> & go")]
    assert (root[1].tag, root[1].text, root[1].attrib) == (
        "Redirect",
        "https://x.test/again",
        {"method": "POST"},
    )
    notify = ET.fromstring(markup.notify("Bye", VOICE, "https://x.test/spoken"))
    assert [(c.tag, c.text) for c in notify] == [
        ("Speak", "Bye"),
        ("Redirect", "https://x.test/spoken"),  # it was said: we hang up after the delay
    ]
    held = ET.fromstring(markup.hold_then_hangup(33))
    assert [(c.tag, c.attrib) for c in held] == [("Wait", {"length": "33"}), ("Hangup", {})]
    assert markup.hangup("rejected") == '<Response><Hangup reason="rejected" /></Response>'
    assert markup.empty() == "<Response />"
    assert "&amp;" in markup.keep_alive("https://x.test/?a=1&b=2")


@settings(max_examples=300, deadline=None)
@given(text=st.text(min_size=1, max_size=500))
def test_text_survives_the_url(text: str) -> None:
    url = callback_url("https://x.test/hook?keep=1", Callback(flow="speak", call_id="c", say=text))
    from urllib.parse import parse_qsl, urlsplit

    query = dict(parse_qsl(urlsplit(url).query))
    assert query["keep"] == "1" and query["provider"] == "plivo"
    assert set(query["say"]) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    expected = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates become "?"
    assert read_callback(query).say == expected


def test_long_texts_fit_compressed_and_the_unfittable_are_refused() -> None:
    assert decode_text(encode_text("Please call us back. " * 190)) == "Please call us back. " * 190
    with pytest.raises(TextTooLong, match="too long to hand to Plivo"):
        encode_text("".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(4000)))


def test_decoding_is_bounded() -> None:
    bomb = zlib.compress(b"a" * (MAX_TEXT_BYTES * 4), 9)
    with pytest.raises(BadCallbackQuery):
        decode_text(base64.urlsafe_b64encode(bomb).decode().rstrip("="))
    with pytest.raises(BadCallbackQuery):
        decode_text(base64.urlsafe_b64encode(b"\xff\xfe").decode())
    with pytest.raises(BadCallbackQuery):
        decode_text("A" * 5000)


def _config(**raw: Any) -> Any:
    base = {"provider": "plivo", "fromNumber": "+15550001000"}
    block = {"authId": "MAPLIVOPROVIDER00001", "authToken": "t", **raw.pop("plivo", {})}
    return parse_config({**base, "plivo": block, **raw}, env={})


def _call(direction: Direction, ours: str, **metadata: Any) -> CallRecord:
    other = "+15559990000"
    inbound = direction == Direction.INBOUND
    return CallRecord(
        provider="plivo",
        direction=direction,
        mode=Mode.CONVERSATION,
        from_number=other if inbound else ours,
        to_number=ours if inbound else other,
        started_at=0,
        metadata=metadata,
    )


def test_voice_and_language_come_from_the_line_then_the_block_then_tts() -> None:
    assert voice_for(_config(), None) == CarrierVoice("WOMAN", "en-US")
    assert voice_for(_config(tts={"providers": {"openai": {"voice": "onyx"}}}), None).voice == (
        "Polly.Brian"
    )
    assert voice_for(_config(tts={"openai": {"voice": "Polly.Emma"}}), None).voice == "Polly.Emma"
    config = _config(
        plivo={"voice": "MAN", "language": "es-ES"},
        numbers={"+15550004444": {"voice": "Polly.Amy", "language": "en-GB"}},
    )
    assert voice_for(config, None) == CarrierVoice("MAN", "es-ES")
    routed = _call(Direction.INBOUND, "+15550004444", numberRouteKey="+15550004444")
    assert voice_for(config, our_route(config, routed)) == CarrierVoice("Polly.Amy", "en-GB")
    outbound = _call(Direction.OUTBOUND, "15550004444")  # digits match the route too
    assert voice_for(config, our_route(config, outbound)) == CarrierVoice("Polly.Amy", "en-GB")
