"""X-Twilio-Signature edge cases, judged against twilio-python's RequestValidator where it has
an answer: the `;params` tail of a path, both port spellings, JSON bodies, repeated form
fields; and a URL that cannot be parsed is refused (never checked against empty variants)."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from twilio.request_validator import RequestValidator

from voice_call.security.signatures import twilio

TOKEN = "12345"
ORACLE = RequestValidator(TOKEN)
PARAMS = {"CallSid": "CA1", "From": "+15550001111", "Digits": "12"}


def _sdk_accepts(url: str, params: object, signature: str) -> bool:
    return bool(ORACLE.validate(url, params, signature))


@pytest.mark.parametrize(
    ("requested", "signed"),
    [
        ("https://voice.example.com/hook;", "https://voice.example.com/hook"),
        (
            "https://voice.example.com/hook;?type=status",
            "https://voice.example.com/hook?type=status",
        ),
        ("https://voice.example.com:8443/hook;", "https://voice.example.com:8443/hook"),
        ("https://voice.example.com/hook;v=1?n=2", "https://voice.example.com/hook;v=1?n=2"),
    ],
)
def test_an_empty_params_tail_is_dropped_as_twilios_validator_drops_it(
    requested: str, signed: str
) -> None:
    signature = ORACLE.compute_signature(signed, PARAMS)
    assert _sdk_accepts(requested, PARAMS, signature)
    assert twilio.validate(TOKEN, requested, PARAMS, signature)
    assert twilio.signed_string(TOKEN, requested, PARAMS, signature) == (
        signed + "".join(f"{k}{PARAMS[k]}" for k in sorted(PARAMS))
    )


def test_the_params_tail_keeps_the_other_port_spelling() -> None:
    with_port = "https://voice.example.com:443/hook;v=1"
    signature = ORACLE.compute_signature(with_port, PARAMS)
    assert _sdk_accepts("https://voice.example.com/hook;v=1", PARAMS, signature)
    assert twilio.validate(TOKEN, "https://voice.example.com/hook;v=1", PARAMS, signature)
    bare = ORACLE.compute_signature("https://voice.example.com/hook;v=1", PARAMS)
    assert twilio.validate(TOKEN, with_port, PARAMS, bare)


@pytest.mark.parametrize(
    ("requested", "signed"),
    [
        ("https://voice.example.com/hook", "https://voice.example.com:443/hook"),
        ("https://voice.example.com:443/hook", "https://voice.example.com/hook"),
        ("http://voice.example.com/hook", "http://voice.example.com:80/hook"),
        ("http://voice.example.com:8080/hook?x=1", "http://voice.example.com/hook?x=1"),
    ],
)
def test_either_port_spelling_verifies(requested: str, signed: str) -> None:
    signature = ORACLE.compute_signature(signed, PARAMS)
    assert _sdk_accepts(requested, PARAMS, signature)
    assert twilio.validate(TOKEN, requested, PARAMS, signature)
    assert twilio.signed_string(TOKEN, requested, PARAMS, signature) == signed + (
        twilio.signing_string("", PARAMS)
    )


def test_an_ipv6_host_keeps_its_brackets_when_the_port_goes() -> None:
    signature = twilio.compute_signature(TOKEN, "https://[::1]/hook", PARAMS)
    assert twilio.validate(TOKEN, "https://[::1]:8443/hook", PARAMS, signature)
    assert not twilio.validate(TOKEN, "https://[::1]:8443/hook", PARAMS, signature[:-2] + "AA")


def test_https_gets_443_and_http_gets_80() -> None:
    for url, port in (("https://h.example/hook", 443), ("http://h.example/hook", 80)):
        signature = twilio.compute_signature(TOKEN, url.replace("/hook", f":{port}/hook"), PARAMS)
        assert twilio.validate(TOKEN, url, PARAMS, signature)
        other = 80 if port == 443 else 443
        wrong = twilio.compute_signature(TOKEN, url.replace("/hook", f":{other}/hook"), PARAMS)
        assert not twilio.validate(TOKEN, url, PARAMS, wrong)


@pytest.mark.parametrize(
    "url",
    [
        "https://voice.example.com:notaport/hook",
        "https://voice.example.com:99999/hook",
        "http://[::1/hook",
        "https://voice.example.com:443:1/hook;",
    ],
)
def test_an_unparsable_url_is_refused_without_raising(url: str) -> None:
    for signature in ("", twilio.compute_signature(TOKEN, "", PARAMS)):
        assert twilio.signed_string(TOKEN, url, PARAMS, signature) is None
        assert not twilio.validate(TOKEN, url, PARAMS, signature)
        assert twilio.signed_form_string(TOKEN, url, list(PARAMS.items()), signature) is None
        assert not twilio.validate_form(TOKEN, url, list(PARAMS.items()), signature)
        assert twilio.signed_string(TOKEN, url, b"{}", signature) is None


def test_empty_variants_never_match() -> None:
    # The signature of the params alone, as if the URL had been parsed to nothing.
    signature = twilio.compute_signature(TOKEN, "", PARAMS)
    assert not twilio.validate(TOKEN, "https://voice.example.com:x/", PARAMS, signature)


def test_a_json_body_is_signed_through_its_hash_in_the_url() -> None:
    body = b'{"CallSid":"CA1"}'
    url = twilio.json_signed_url("https://voice.example.com/hook?type=status", body)
    assert url.startswith("https://voice.example.com/hook?type=status&bodySHA256=")
    assert twilio.json_signed_url("https://h.example/hook", body).startswith(
        "https://h.example/hook?bodySHA256="
    )
    signature = ORACLE.compute_signature(url, {})
    assert _sdk_accepts(url, body.decode(), signature)
    assert twilio.validate(TOKEN, url, body, signature)
    assert twilio.validate(TOKEN, url, body.decode(), signature)
    assert twilio.signed_string(TOKEN, url, body, signature) == url
    assert not twilio.validate(TOKEN, url, b'{"CallSid":"CA2"}', signature)
    plain = "https://voice.example.com/hook"
    assert not twilio.validate(TOKEN, plain, body, ORACLE.compute_signature(plain, {}))


def test_repeated_fields_are_signed_deduplicated_and_sorted() -> None:
    url = "https://voice.example.com/hook"
    pairs = [("b", "2"), ("a", "9"), ("a", "1"), ("a", "9")]
    expected = url + "a1a9b2"
    signature = twilio.compute_signature(TOKEN, expected)
    assert twilio.signed_form_string(TOKEN, url, pairs, signature) == expected
    assert twilio.validate_form(TOKEN, url, pairs, signature)
    assert not twilio.validate_form(TOKEN, url, pairs[:1], signature)
    assert twilio.validate(TOKEN, url, {"b": "2", "a": ["9", "1", "9"]}, signature)
    assert twilio.signing_string(url, {"b": "2", "a": ("9", "1")}) == expected


class MultiDict(dict[str, str]):
    """A form as Starlette hands it over: `[name]` gives one value, getlist all of them."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


def test_a_multidict_form_signs_every_value_of_a_repeated_field() -> None:
    url = "https://voice.example.com/hook"
    form = MultiDict([("a", "2"), ("a", "1"), ("b", "3")])
    signature = twilio.compute_signature(TOKEN, url + "a1a2b3")
    assert twilio.validate(TOKEN, url, form, signature)
    assert twilio.signing_string(url, form) == url + "a1a2b3"
    assert twilio.signing_string(url, {"n": [1, 2]}) == url + "n1n2"  # type: ignore[dict-item]


def test_any_mapping_of_names_to_values_is_signed_like_a_dict() -> None:
    url = "https://voice.example.com/hook"
    form = MappingProxyType({"b": "33", "a": ["2", "1"]})
    assert twilio.signing_string(url, form) == url + "a1a2b33"
    signature = twilio.compute_signature(TOKEN, url + "a1a2b33")
    assert twilio.validate(TOKEN, url, form, signature)


def test_a_get_or_empty_form_signs_the_url_alone() -> None:
    url = "https://voice.example.com/hook?CallSid=CA1"
    signature = ORACLE.compute_signature(url, {})
    assert twilio.validate(TOKEN, url, None, signature)
    assert twilio.validate(TOKEN, url, {}, signature)
    assert twilio.signed_string(TOKEN, url, None, signature) == url
    assert twilio.compute_signature(TOKEN, url) == signature


def test_a_wrong_signature_or_token_is_refused() -> None:
    url = "https://voice.example.com/hook"
    signature = twilio.compute_signature(TOKEN, url, PARAMS)
    assert not twilio.validate("other-token", url, PARAMS, signature)
    assert not twilio.validate(TOKEN, url, {**PARAMS, "Digits": "13"}, signature)
    assert twilio.signed_form_string(TOKEN, url, [("x", "1")], signature) is None
    assert twilio.HEADER == "X-Twilio-Signature"
