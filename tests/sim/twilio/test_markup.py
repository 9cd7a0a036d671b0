"""TwiML parsing and Gather semantics: the pure parts of the Twilio emulator."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_call.sim.twilio.markup import (
    Connect,
    Gather,
    Hangup,
    Pause,
    Play,
    Redirect,
    Reject,
    Say,
    Stream,
    TwimlError,
    Unsupported,
    gathered_digits,
    parse_twiml,
    resolve,
)


def test_parses_the_verbs_with_twilio_defaults() -> None:
    doc = parse_twiml(
        """<?xml version="1.0" encoding="UTF-8"?>
        <Response>
          <Say voice="alice" loop="2"> Hello there </Say>
          <Play digits="12">https://example.com/a.mp3</Play>
          <Pause/>
          <Gather input="speech dtmf" action="/next" method="GET" timeout="3" numDigits="4"
                  finishOnKey="*" actionOnEmptyResult="true">
            <Say>Prompt</Say><Dial>+1555</Dial><Pause length="2"/>
          </Gather>
          <Gather/>
          <Redirect method="GET">/again</Redirect>
          <Connect action="/after">
            <Stream url="wss://x.example/media" name="s" track="inbound_track"
                    statusCallback="https://x.example/st"><Parameter name="a" value="1"/></Stream>
          </Connect>
          <Record/>
          <Reject reason="busy"/>
          <Hangup/>
        </Response>""",
        url="https://app.example/voice",
    )
    assert doc.url == "https://app.example/voice"
    assert doc.verbs == (
        Say("Hello there", 2),
        Play("https://example.com/a.mp3", 1, "12"),
        Pause(1.0),
        Gather(
            input=frozenset({"speech", "dtmf"}),
            action="/next",
            method="GET",
            timeout=3.0,
            num_digits=4,
            finish_on_key="*",
            action_on_empty_result=True,
            prompts=(Say("Prompt"), Pause(2.0)),  # Dial cannot nest in Gather: dropped
        ),
        Gather(),  # input dtmf, POST to the document URL, 5 s, finishOnKey "#"
        Redirect("/again", "GET"),
        Connect(
            Stream(
                url="wss://x.example/media",
                name="s",
                status_callback="https://x.example/st",
                parameters={"a": "1"},
            ),
            action="/after",
        ),
        Unsupported("Record"),
        Reject("busy"),
        Hangup(),
    )
    assert Gather().timeout == 5.0 and Gather().finish_on_key == "#"


def test_say_text_includes_ssml_children() -> None:
    (say,) = parse_twiml(
        '<Response><Say>Hello <prosody rate="slow">there</prosody>,<break/> friend</Say></Response>'
    ).verbs
    assert say == Say("Hello there, friend")


def test_loop_zero_is_bounded_and_bad_numbers_fall_back() -> None:
    (say, pause) = parse_twiml(
        '<Response><Say loop="0">x</Say><Pause length="-3"/></Response>'
    ).verbs
    assert isinstance(say, Say) and say.loop == 100
    assert pause == Pause(1.0)
    (gather,) = parse_twiml('<Response><Gather timeout="soon" input="tea"/></Response>').verbs
    assert gather == Gather()


@pytest.mark.parametrize(
    "text",
    ["", "<Response>", "<Response><Say>x</Response>", "<Say>hi</Say>", "Hello", "<?xml?>"],
)
def test_malformed_twiml_is_error_12100(text: str) -> None:
    with pytest.raises(TwimlError) as info:
        parse_twiml(text)
    assert info.value.code == 12100


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_any_input_parses_or_raises_twiml_error(text: str | bytes) -> None:
    try:
        parse_twiml(text)
    except TwimlError as exc:
        assert exc.code == 12100


_elements = st.recursive(
    st.builds(
        lambda tag, attrs, body: f"<{tag} {attrs}>{body}</{tag}>",
        st.sampled_from(["Say", "Play", "Pause", "Gather", "Hangup", "Redirect", "Reject", "Foo"]),
        st.sampled_from(["", 'loop="x"', 'length="1e9"', 'numDigits="-1"', 'input=""']),
        st.text(alphabet="abc <>&;", max_size=8).map(
            lambda t: t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        ),
    ),
    lambda inner: st.lists(inner, max_size=3).map(
        lambda xs: "<Gather>" + "".join(xs) + "</Gather>"
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_elements, max_size=5))
def test_well_formed_documents_always_parse(elements: list[str]) -> None:
    doc = parse_twiml("<Response>" + "".join(elements) + "</Response>")
    assert len(doc.verbs) == len(elements)


@pytest.mark.parametrize(
    ("pressed", "finish", "num", "digits"),
    [
        ("1234#", "#", None, "1234"),
        ("12#34", "#", None, "12"),
        ("123456", "#", 4, "1234"),
        ("12*", "*", 4, "12"),
        ("1234", "", None, "1234"),
        ("#", "#", None, ""),
    ],
)
def test_gathered_digits(pressed: str, finish: str, num: int | None, digits: str) -> None:
    assert gathered_digits(pressed, Gather(finish_on_key=finish, num_digits=num)) == digits


def test_resolve_relative_urls_against_the_document() -> None:
    assert resolve("https://app.example/a/voice?x=1", "next") == "https://app.example/a/next"
    assert resolve("https://app.example/a/voice", "/b") == "https://app.example/b"
    assert resolve(None, "https://other.example/c") == "https://other.example/c"
    assert resolve(None, "/relative") is None  # inline Twiml has no document URL
