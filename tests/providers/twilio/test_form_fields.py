"""The Twilio webhook path's own form decoding and form signature check agree with the stdlib
and with `validate` (src/voice_call/providers/twilio/webhooks.py, security/signatures/twilio.py)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_call.providers.twilio.webhooks import MAX_FIELDS, form_fields
from voice_call.security.signatures.twilio import compute_signature, validate, validate_form

TOKEN = "12345"
URL = "https://example.com/voice/webhook?type=status&callId=abc"


def stdlib(text: str) -> tuple[str, object]:
    try:
        return "ok", tuple(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS))
    except ValueError as exc:
        return "error", str(exc)


def ours(text: str) -> tuple[str, object]:
    try:
        return "ok", form_fields(text)
    except ValueError as exc:
        return "error", str(exc)


@settings(max_examples=2000)
@given(st.text(alphabet="ab=&+%2CF8é\x00;\x7f", max_size=40))
def test_form_fields_match_parse_qsl(text: str) -> None:
    assert ours(text) == stdlib(text)


@pytest.mark.parametrize(
    "text",
    [
        "Timestamp=Thu%2C+26+Nov+2026+08%3A30%3A12+GMT&From=%2B15550001000",
        "a=%C3%A9&b=%E9&c=%zz&d=%&e",  # good and broken UTF-8, bad and cut-off escapes
        "&" * (MAX_FIELDS - 1),
        "&" * MAX_FIELDS,  # one field too many: the same ValueError
        "=&==&a=b=c",
    ],
)
def test_form_fields_edge_cases(text: str) -> None:
    assert ours(text) == stdlib(text)


pairs = st.lists(st.tuples(st.text(max_size=4), st.text(max_size=4)), max_size=8)


@settings(max_examples=500)
@given(pairs=pairs, url=st.sampled_from([URL, "http://h:8080/a;", "http://[::1]/x;y?z=1"]))
def test_validate_form_agrees_with_validate(pairs: list[tuple[str, str]], url: str) -> None:
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    good = compute_signature(TOKEN, url, form)
    for signature in (good, "bad"):
        assert validate_form(TOKEN, url, pairs, signature) == validate(TOKEN, url, form, signature)
    if url == URL:  # (an empty ";" params part is dropped from both variants, as Twilio's own
        # validator does, so a signature over the URL with it does not verify either way)
        assert validate_form(TOKEN, url, pairs, good)
