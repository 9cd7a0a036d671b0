"""Plivo signature edge cases, judged against plivo-python where it has an answer: several query
parameters, GET and POST, the forms a header's signature may take (padding, line breaks, the
URL-safe alphabet, several comma-separated), and what is refused without raising."""

from __future__ import annotations

import base64
import binascii
import itertools

import pytest
from plivo.utils import validate_signature, validate_v3_signature

from voice_call.security.signatures import plivo

TOKEN = "MAXXXXXXXXXXXXXXXXXX-token"
URL = "https://voice.example.com/voice/webhook?type=status&callId=c1&n=ab12"
PARAMS = {"CallUUID": "u1", "CallStatus": "completed", "To": "+15550001111"}


def test_the_header_names() -> None:
    assert (plivo.V3_HEADER, plivo.V3_MA_HEADER, plivo.V3_NONCE_HEADER) == (
        "X-Plivo-Signature-V3",
        "X-Plivo-Signature-Ma-V3",
        "X-Plivo-Signature-V3-Nonce",
    )
    assert (plivo.V2_HEADER, plivo.V2_MA_HEADER, plivo.V2_NONCE_HEADER, plivo.V1_HEADER) == (
        "X-Plivo-Signature-V2",
        "X-Plivo-Signature-Ma-V2",
        "X-Plivo-Signature-V2-Nonce",
        "X-Plivo-Signature",
    )


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_v3_with_several_query_parameters_matches_plivos_validator(method: str) -> None:
    signature = plivo.sign_v3(TOKEN, URL, PARAMS, "12345", method)
    assert validate_v3_signature(method, URL, "12345", TOKEN, signature, PARAMS)
    assert plivo.validate_v3(TOKEN, URL, PARAMS, "12345", signature, method)
    assert not plivo.validate_v3(TOKEN, URL, {**PARAMS, "To": "+1"}, "12345", signature, method)
    assert not plivo.validate_v3(TOKEN, URL, PARAMS, "12346", signature, method)


def test_v3_posts_by_default_and_any_signature_in_the_header_may_match() -> None:
    signature = plivo.sign_v3(TOKEN, URL, PARAMS, "n1")
    assert signature == plivo.sign_v3(TOKEN, URL, PARAMS, "n1", "POST")
    assert plivo.validate_v3(TOKEN, URL, PARAMS, "n1", f"bm90IGl0,{signature}")
    assert not plivo.validate_v3(TOKEN, URL, PARAMS, "n1", "bm90IGl0,c3RpbGwgbm90")


def test_v2_matches_plivos_validator() -> None:
    signature = plivo.sign_v2(TOKEN, URL, "nonce-1")
    assert validate_signature(URL, "nonce-1", signature, TOKEN)
    assert plivo.validate_v2(TOKEN, URL, "nonce-1", signature)
    assert not plivo.validate_v2(TOKEN, URL, "nonce-2", signature)


def _with(chars: str, without: str) -> str:
    """A V2 signature whose standard base64 holds `chars` and none of `without`."""
    for n in itertools.count():
        signature = plivo.sign_v2(TOKEN, URL, f"n{n}")
        if all(c in signature for c in chars) and not any(c in signature for c in without):
            return signature
    raise AssertionError("unreachable")


@pytest.mark.parametrize(("chars", "without"), [("+", "/"), ("/", "+"), ("+/", "")])
def test_the_url_safe_alphabet_is_accepted(chars: str, without: str) -> None:
    signature = _with(chars, without)
    nonce = next(
        f"n{n}" for n in itertools.count() if plivo.sign_v2(TOKEN, URL, f"n{n}") == signature
    )
    url_safe = signature.replace("+", "-").replace("/", "_")
    assert plivo.validate_v2(TOKEN, URL, nonce, url_safe)
    assert plivo.validate_v2(TOKEN, URL, nonce, signature)


def test_padding_and_line_breaks_do_not_matter() -> None:
    signature = plivo.sign_v2(TOKEN, URL, "nonce-1")
    assert signature.endswith("=")
    assert plivo.validate_v2(TOKEN, URL, "nonce-1", signature.rstrip("="))
    assert plivo.validate_v2(TOKEN, URL, "nonce-1", f" {signature[:20]}\r\n{signature[20:]} ")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:10] + "!" + s[10:],  # not base64: refused, never skipped over
        lambda s: s[:10] + "." + s[10:],
        lambda s: "",
        lambda s: s * 7,  # too long to be one
        lambda s: s[:-2] + "A=",
    ],
)
def test_a_mangled_signature_is_refused_without_raising(mangle: object) -> None:
    signature = plivo.sign_v2(TOKEN, URL, "nonce-1")
    assert callable(mangle)
    assert not plivo.validate_v2(TOKEN, URL, "nonce-1", mangle(signature))
    v3 = plivo.sign_v3(TOKEN, URL, PARAMS, "n1")
    assert not plivo.validate_v3(TOKEN, URL, PARAMS, "n1", mangle(v3))


def test_v1_signs_the_full_url_and_the_sorted_params() -> None:
    signature = plivo.sign_v1(TOKEN, URL, {"b": "2", "a": ["3", "1"]})
    mac = base64.b64decode(signature)
    assert len(mac) == 20 and binascii.hexlify(mac)  # HMAC-SHA1
    assert plivo.validate_v1(TOKEN, URL, {"a": ["3", "1"], "b": "2"}, signature)
    assert not plivo.validate_v1(TOKEN, URL, {"a": ["1", "3"], "b": "2"}, signature)
    assert not plivo.validate_v1(TOKEN, URL + "&x=1", {"b": "2", "a": ["3", "1"]}, signature)


def test_request_keys_name_what_was_signed() -> None:
    key = plivo.v2_request_key("https://h.example/ab?x=1", "c")
    assert key.startswith("plivo:v2:") and len(key) == len("plivo:v2:") + 64
    assert key == plivo.v2_request_key("https://h.example/ab?x=2", "c")  # V2 signs no query
    assert key != plivo.v2_request_key("https://h.example/a", "bc")  # no ambiguous join
    assert key != plivo.v2_request_key("https://h.example/ab", "d")
    v3 = plivo.v3_request_key(URL, PARAMS)
    assert v3.startswith("plivo:v3:") and v3 == plivo.v3_request_key(URL, PARAMS, "POST")
    assert v3 != plivo.v3_request_key(URL, PARAMS, "GET")


def test_a_repeated_query_parameter_is_signed_with_each_value_sorted() -> None:
    url = "https://voice.example.com/hook?b=3&a=2&a=1"
    assert plivo.v3_base_string(url, {}) == "https://voice.example.com/hook?a=1&a=2&b=3"
    assert plivo.v3_base_string(url, {}, "GET") == "https://voice.example.com/hook?a=1&a=2&b=3"
