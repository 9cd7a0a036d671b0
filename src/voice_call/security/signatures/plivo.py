"""Plivo webhook signatures: V3 (current), V2, and legacy V1 (docs/carriers.md §3.4).

V3 (`X-Plivo-Signature-V3` + `X-Plivo-Signature-V3-Nonce`): the base is `scheme://netloc/path`
of the URL (no query), then
- POST: `?` when the URL has a query or the body has params, the sorted query as `k=v&k=v`, a `.`
  when there are both, then the body params sorted by key as `kv` pairs with no separator;
- GET: the params merged with the query (the query wins a shared key), sorted, as `?k=v&k=v`
  when non-empty;
then `.` + nonce. HMAC-SHA256 keyed with the auth token, base64. Values are the decoded text in
UTF-8, never URL-encoded. The header may hold several comma-separated signatures (one per
token while a token rotates); any match passes.

V2 (`X-Plivo-Signature-V2` + `X-Plivo-Signature-V2-Nonce`): HMAC-SHA256 over
`scheme://netloc/path` followed directly by the nonce; query and params are not covered.

V1 (`X-Plivo-Signature`, legacy): HMAC-SHA1 over the full URL followed by the params as `kv`
sorted by key (values neither sorted nor de-duplicated), base64.

The URL is split the way plivo-python does (`urlparse`), so a `;params` tail on the last path
segment is not part of the base, exactly as the official validator computes it.

Comparisons are constant-time on the decoded digests (both sides canonicalised: padding, line
breaks and the URL-safe alphabet do not matter). `v3_request_key` / `v2_request_key` name a
verified request for the replay cache by what was signed, never by the signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlparse, urlunparse

V3_HEADER = "X-Plivo-Signature-V3"
V3_MA_HEADER = "X-Plivo-Signature-Ma-V3"  # signed with the main account's token
V3_NONCE_HEADER = "X-Plivo-Signature-V3-Nonce"
V2_HEADER = "X-Plivo-Signature-V2"
V2_MA_HEADER = "X-Plivo-Signature-Ma-V2"
V2_NONCE_HEADER = "X-Plivo-Signature-V2-Nonce"
V1_HEADER = "X-Plivo-Signature"

# A param is one value or several (a repeated form field).
ParamValue = str | Sequence[str]
Params = Mapping[str, ParamValue]


def _values(value: ParamValue) -> list[str]:
    return [value] if isinstance(value, str) else sorted(value)


def _split(url: str) -> tuple[str, dict[str, list[str]]]:
    """(`scheme://netloc/path`, query params decoded)."""
    parts = urlparse(url)
    base = urlunparse((parts.scheme, parts.netloc, parts.path, "", "", ""))
    return base, parse_qs(parts.query, keep_blank_values=True)


def _query_string(params: Mapping[str, ParamValue]) -> str:
    return "&".join(
        "&".join(f"{key}={value}" for value in _values(params[key])) for key in sorted(params)
    )


def _params_string(params: Params) -> str:
    return "".join(
        "".join(f"{key}{value}" for value in _values(params[key])) for key in sorted(params)
    )


def _hmac_b64(key: str, message: str, digest: str) -> str:
    mac = hmac.new(key.encode("utf-8"), message.encode("utf-8"), digest).digest()
    return base64.b64encode(mac).decode("ascii")


def _digest_bytes(signature: str) -> bytes | None:
    """A header signature as raw bytes: base64 or base64url, padding optional; None if neither."""
    text = "".join(signature.split())
    if not text or len(text) > 256:
        return None
    text += "=" * (-len(text) % 4)
    altchars = b"-_" if ("-" in text or "_" in text) else None
    try:
        return base64.b64decode(text, altchars=altchars, validate=True)
    except (ValueError, binascii.Error):
        return None


def _equal(expected: str, given: str) -> bool:
    """Constant-time, on the decoded digests: both sides canonicalised, so a signature
    re-encoded with other padding, line breaks or the URL-safe alphabet still compares equal."""
    want = base64.b64decode(expected)
    got = _digest_bytes(given)
    return got is not None and hmac.compare_digest(want, got)


def v3_base_string(url: str, params: Params, method: str = "POST") -> str:
    """The string V3 signs, before `.nonce` is appended."""
    base, query = _split(url)
    if method.upper() == "GET":
        merged: dict[str, ParamValue] = dict(params)
        merged.update(query)  # plivo-python: a query value replaces a param of the same name
        flat = _query_string(merged)
        return f"{base}?{flat}" if flat else base
    query_string = _query_string(query)
    if query_string or params:
        base += "?" + query_string
    if query_string and params:
        base += "."
    return base + _params_string(params)


def sign_v3(auth_token: str, url: str, params: Params, nonce: str, method: str = "POST") -> str:
    return _hmac_b64(auth_token, f"{v3_base_string(url, params, method)}.{nonce}", "sha256")


def validate_v3(
    auth_token: str,
    url: str,
    params: Params,
    nonce: str,
    signature: str,
    method: str = "POST",
) -> bool:
    """True when any comma-separated signature in the header matches."""
    expected = sign_v3(auth_token, url, params, nonce, method)
    return any(_equal(expected, candidate) for candidate in signature.split(","))


def sign_v2(auth_token: str, url: str, nonce: str) -> str:
    base, _ = _split(url)
    return _hmac_b64(auth_token, base + nonce, "sha256")


def validate_v2(auth_token: str, url: str, nonce: str, signature: str) -> bool:
    return _equal(sign_v2(auth_token, url, nonce), signature)


def sign_v1(auth_token: str, url: str, params: Params) -> str:
    values = {key: [v] if isinstance(v, str) else list(v) for key, v in params.items()}
    message = url + "".join(f"{key}{v}" for key in sorted(values) for v in values[key])
    return _hmac_b64(auth_token, message, "sha1")


def validate_v1(auth_token: str, url: str, params: Params, signature: str) -> bool:
    return _equal(sign_v1(auth_token, url, params), signature)


def v3_request_key(url: str, params: Params, method: str = "POST") -> str:
    """The replay and dedupe key of a V3-verified request: the base string it signed.

    Not the nonce: Plivo retries a callback with a fresh nonce (so a fresh signature), and the
    retry is the same callback, to be applied once. Not the signature either, so the same
    request signed another way (the main-account header, another encoding) is still the same.
    Every callback URL we write carries its own `n`, so two callbacks that are not a retry of
    one another differ in the base string.
    """
    base = v3_base_string(url, params, method)
    return "plivo:v3:" + hashlib.sha256(base.encode()).hexdigest()


def v2_request_key(url: str, nonce: str) -> str:
    """V2 signs only the URL's base and the nonce: those are all that name the request."""
    base, _ = _split(url)
    return "plivo:v2:" + hashlib.sha256(f"{base}\n{nonce}".encode()).hexdigest()
