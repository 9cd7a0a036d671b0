"""X-Twilio-Signature: HMAC-SHA1 over the URL Twilio requested plus the sorted POST params.

Written from carrier-protocols.md §1.4 (verified against twilio-python's RequestValidator):
the string to sign is the full URL, then for each param name in sorted order its de-duplicated,
sorted values as `name + value` with no separators; GET requests append nothing (the params are
in the URL). The key is the Auth Token; the result is standard base64. A JSON body is signed as
a URL carrying `bodySHA256=<hex sha256 of the body>` with no params. Like Twilio's validator,
`validate` accepts the URL with its port stripped or with the default port added, because
Twilio's own signing is inconsistent about ports.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlparse

HEADER = "X-Twilio-Signature"

Params = Mapping[str, str | Sequence[str]]


def _values(params: Params, name: str) -> list[str]:
    # Multi-dicts (Starlette FormData, Django QueryDict) keep every value of a repeated key,
    # and their `[name]` gives only one of them; a plain dict skips the lookup for `getlist`.
    getlist = None if type(params) is dict else getattr(params, "getlist", None)
    if callable(getlist):
        return [str(v) for v in getlist(name)]
    value = params[name]
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _params_part(params: Params | None) -> str:
    """What follows the URL in the string to sign; the same for every URL variant."""
    if not params:
        return ""
    parts: list[str] = []
    for name in sorted(set(params)):
        parts.extend(name + value for value in sorted(set(_values(params, name))))
    return "".join(parts)


def signing_string(url: str, params: Params | None = None) -> str:
    return url + _params_part(params)


def _sign(auth_token: str, text: str) -> str:
    mac = hmac.new(auth_token.encode(), text.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def compute_signature(auth_token: str, url: str, params: Params | None = None) -> str:
    """The X-Twilio-Signature value Twilio sends for a request to `url` with these form params."""
    return _sign(auth_token, signing_string(url, params))


def body_sha256(body: str | bytes) -> str:
    raw = body.encode() if isinstance(body, str) else body
    return hashlib.sha256(raw).hexdigest()


def json_signed_url(url: str, body: str | bytes) -> str:
    """The URL Twilio requests (and signs, with no params) when it posts a JSON body."""
    return f"{url}{'&' if '?' in url else '?'}bodySHA256={body_sha256(body)}"


def _port_variants(url: str) -> tuple[str, str] | None:
    """(url without its port, url with an explicit port), or None when the URL is unparsable."""
    try:
        parts = urlparse(url)
        port = parts.port
    except ValueError:
        return None
    default = f"{parts.netloc}:{443 if parts.scheme == 'https' else 80}"
    # rpartition: the port follows the last colon even for IPv6 literals like [::1]:8080.
    bare = parts.netloc.rpartition(":")[0] if port is not None else parts.netloc
    with_port = parts.netloc if port is not None else default
    return parts._replace(netloc=bare).geturl(), parts._replace(netloc=with_port).geturl()


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def validate(
    auth_token: str, url: str, params: Params | str | bytes | None, signature: str
) -> bool:
    """True when `signature` is what Twilio would send for this request (constant-time compare).

    `params` is the decoded form for a form POST, empty/None for a GET, or the raw body (str or
    bytes) for a JSON webhook, whose URL must then carry `bodySHA256`.
    """
    variants = _port_variants(url)
    if variants is None:
        return False
    form: Params | None
    body_ok = True
    if isinstance(params, str | bytes):
        query = parse_qs(urlparse(url).query)
        if "bodySHA256" not in query:
            return False  # a raw body is only signed through its hash in the URL
        body_ok = _equal(body_sha256(params), query["bodySHA256"][0])
        form = None
    else:
        form = params
    # Evaluate both variants before combining, so timing does not reveal which one matched.
    # The params part is built once: only the URL differs between the two.
    part = _params_part(form)
    matches = [_equal(_sign(auth_token, v + part), signature) for v in variants]
    return body_ok and any(matches)
