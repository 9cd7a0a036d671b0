"""X-Twilio-Signature: the vectors of docs/carriers.md §5.1, and agreement with twilio's SDK."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from voice_call.security.signatures.twilio import (
    body_sha256,
    compute_signature,
    json_signed_url,
    validate,
)

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
BODY = '{"property": "value", "boolean": true}'


def test_t1_compute_signature() -> None:
    assert compute_signature(TOKEN, URL, PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert validate(TOKEN, URL, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_t2_repeated_keys_are_sorted_and_deduplicated() -> None:
    params = {"Sid": "CA123", "SidAccount": "AC123", "Digits": ["5678", "1234", "1234"]}
    assert compute_signature(TOKEN, URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


def test_t3_explicit_port_validates_against_the_portless_signature() -> None:
    url = "https://mycompany.com:1234/myapp.php?foo=1&bar=2"
    assert validate(TOKEN, url, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_t4_http_with_port_kept() -> None:
    url = "http://mycompany.com:1234/myapp.php?foo=1&bar=2"
    assert compute_signature(TOKEN, url, PARAMS) == "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
    assert validate(TOKEN, url, PARAMS, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=")


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        ("https://mycompany.com/myapp.php?foo=1&bar=2", "kvajT1Ptam85bY51eRf/AJRuM3w="),  # T5
        ("http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),  # T6
    ],
)
def test_t5_t6_default_port_added(url: str, signature: str) -> None:
    with_port = url.replace(".com/", ".com:443/" if url.startswith("https") else ".com:80/")
    assert compute_signature(TOKEN, with_port, PARAMS) == signature
    assert validate(TOKEN, url, PARAMS, signature)


def test_t7_body_sha256() -> None:
    expected = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    assert body_sha256(BODY) == expected
    assert body_sha256(BODY.encode()) == expected


def test_t8_json_body_signed_through_its_hash() -> None:
    url = json_signed_url(URL, BODY)
    assert url == URL + "&bodySHA256=" + body_sha256(BODY)
    assert compute_signature(TOKEN, url) == "a9nBmqA0ju/hNViExpshrM61xv4="
    assert validate(TOKEN, url, BODY, "a9nBmqA0ju/hNViExpshrM61xv4=")
    assert validate(TOKEN, url, BODY, "uzN7O1319XdYoYMfTT2eUM1PJT0=")  # the with-port variant
    assert not validate(TOKEN, url, BODY.replace("true", "false"), "a9nBmqA0ju/hNViExpshrM61xv4=")
    assert not validate(TOKEN, URL, BODY, "a9nBmqA0ju/hNViExpshrM61xv4=")  # no bodySHA256


def test_rejects_tampering() -> None:
    good = compute_signature(TOKEN, URL, PARAMS)
    assert not validate(TOKEN, URL, {**PARAMS, "Digits": "9"}, good)
    assert not validate(TOKEN, URL + "&x=1", PARAMS, good)
    assert not validate("other", URL, PARAMS, good)
    assert not validate(TOKEN, URL, PARAMS, good[:-2])
    assert not validate(TOKEN, "http://host:notaport/x", PARAMS, good)


# ---------------------------------------------------------------- against the official validator

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=1)
_urls = st.builds(
    lambda scheme, host, port, path, query: (
        f"{scheme}://{host}{f':{port}' if port else ''}/{path}{'?' + query if query else ''}"
    ),
    st.sampled_from(["http", "https"]),
    st.sampled_from(["example.com", "api.example.org", "127.0.0.1", "[::1]"]),  # [::1]: see below
    st.one_of(st.none(), st.integers(1, 65535)),
    st.text(alphabet="abcdefghij/._-%20", max_size=15),
    st.text(alphabet="abc=&123", max_size=10),
)


class _Multi(dict[str, str]):
    def __init__(self, items: dict[str, list[str]]) -> None:
        super().__init__({k: v[0] for k, v in items.items()})
        self.items_ = items

    def getlist(self, key: str) -> list[str]:
        return self.items_[key]


@settings(max_examples=300, deadline=None)
@given(
    token=_text.filter(bool),
    url=_urls,
    params=st.dictionaries(_names, st.lists(_text, min_size=1, max_size=3), max_size=5),
)
def test_matches_request_validator(token: str, url: str, params: dict[str, list[str]]) -> None:
    official = RequestValidator(token)
    multi = _Multi(params)
    signature = compute_signature(token, url, params)
    assert signature == official.compute_signature(url, multi)
    assert official.validate(url, multi, signature)
    assert validate(token, url, params, signature)
    assert validate(token, url, multi, signature)


@settings(max_examples=300, deadline=None)
@given(
    token=_text.filter(bool),
    scheme=st.sampled_from(["http", "https"]),
    host=st.sampled_from(["example.com", "127.0.0.1"]),
    port=st.one_of(st.none(), st.sampled_from([80, 443, 8080, 1234])),
    signed_port=st.one_of(st.none(), st.sampled_from([80, 443, 8080, 1234])),
    params=st.dictionaries(_names, _text, max_size=4),
)
def test_port_variants_agree_with_request_validator(
    token: str,
    scheme: str,
    host: str,
    port: int | None,
    signed_port: int | None,
    params: dict[str, str],
) -> None:
    """Sign the URL with one port spelling, present it with another: same verdict as the SDK."""

    def url(p: int | None) -> str:
        return f"{scheme}://{host}{f':{p}' if p else ''}/hook?x=1"

    signature = RequestValidator(token).compute_signature(url(signed_port), params)
    expected = RequestValidator(token).validate(url(port), params, signature)
    assert validate(token, url(port), params, signature) == expected


@settings(max_examples=100, deadline=None)
@given(token=_text.filter(bool), url=_urls, body=_text)
def test_json_bodies_agree_with_request_validator(token: str, url: str, body: str) -> None:
    signed = json_signed_url(url, body)
    signature = compute_signature(token, signed)
    assert RequestValidator(token).validate(signed, body, signature)
    assert validate(token, signed, body, signature)


def test_ipv6_port_is_stripped_where_the_sdk_mangles_the_host() -> None:
    """The SDK's remove_port splits the netloc at the first colon, so [::1]:80 becomes "[";
    we strip only the port. Only a deliberate deviation: every non-IPv6 case agrees above."""
    signature = compute_signature(TOKEN, "http://[::1]/hook", PARAMS)
    assert validate(TOKEN, "http://[::1]:8080/hook", PARAMS, signature)
    assert not RequestValidator(TOKEN).validate("http://[::1]:8080/hook", PARAMS, signature)
