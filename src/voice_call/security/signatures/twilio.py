"""X-Twilio-Signature: HMAC-SHA1 over the URL Twilio requested plus the sorted POST params.

Written from docs/carriers.md §1.4 (verified against twilio-python's RequestValidator):
the string to sign is the full URL, then for each param name in sorted order its de-duplicated,
sorted values as `name + value` with no separators; GET requests append nothing (the params are
in the URL). The key is the Auth Token; the result is standard base64. A JSON body is signed as
a URL carrying `bodySHA256=<hex sha256 of the body>` with no params. Like Twilio's validator,
`validate` accepts the URL with its port stripped or with the default port added, because
Twilio's own signing is inconsistent about ports.

What a signature covers is the signed string, not the request's bytes: a form with an empty pair
(`&=`) added, a pair repeated or the pairs reordered, or the URL with the other port spelling,
carries the same valid signature. `signed_string` / `signed_form_string` return exactly the
string that matched, so a caller can name the request by it (the replay and dedupe keys).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qs, urlparse, urlsplit, urlunsplit

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
    """What follows the URL in the string to sign; the same for every URL variant.

    Each name in sorted order with its de-duplicated values in sorted order: exactly the
    order of the sorted set of (name, value) pairs.
    """
    if not params:
        return ""
    if type(params) is dict:  # the common case, without a lookup per name
        pairs = {
            (name, value)
            for name, values in params.items()
            for value in ((values,) if isinstance(values, str) else map(str, values))
        }
    else:
        pairs = {(name, value) for name in params for value in _values(params, name)}
    return _pairs_part(pairs)


def _pairs_part(pairs: Iterable[tuple[str, str]]) -> str:
    return "".join([name + value for name, value in sorted(set(pairs))])


def signing_string(url: str, params: Params | None = None) -> str:
    return url + _params_part(params)


def _sign(auth_token: str, text: str) -> str:
    mac = hmac.digest(auth_token.encode(), text.encode(), "sha1")  # one-shot, in C
    return base64.b64encode(mac).decode()


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
        parts = urlsplit(url)  # memoised by urllib
        port = parts.port
    except ValueError:
        return None
    scheme, netloc, path, query, fragment = parts
    default = f"{netloc}:{443 if scheme == 'https' else 80}"
    # rpartition: the port follows the last colon even for IPv6 literals like [::1]:8080.
    bare = netloc.rpartition(":")[0] if port is not None else netloc
    with_port = netloc if port is not None else default
    if ";" in path:  # as Twilio's validator: urlparse's geturl() drops an empty ";params"
        parsed = urlparse(url)
        return parsed._replace(netloc=bare).geturl(), parsed._replace(netloc=with_port).geturl()
    return (
        urlunsplit((scheme, bare, path, query, fragment)),
        urlunsplit((scheme, with_port, path, query, fragment)),
    )


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def signed_string(
    auth_token: str, url: str, params: Params | str | bytes | None, signature: str
) -> str | None:
    """The string `signature` is the HMAC of (one port variant of `url` + the params part), or
    None when it is not what Twilio would send for this request (constant-time compare).

    `params` is the decoded form for a form POST, empty/None for a GET, or the raw body (str or
    bytes) for a JSON webhook, whose URL must then carry `bodySHA256`.
    """
    variants = _port_variants(url)
    if variants is None:
        return None
    form: Params | None
    body_ok = True
    if isinstance(params, str | bytes):
        query = parse_qs(urlsplit(url).query)
        if "bodySHA256" not in query:
            return None  # a raw body is only signed through its hash in the URL
        body_ok = _equal(body_sha256(params), query["bodySHA256"][0])
        form = None
    else:
        form = params
    signed = _matched(auth_token, variants, _params_part(form), signature)
    return signed if body_ok else None


def validate(
    auth_token: str, url: str, params: Params | str | bytes | None, signature: str
) -> bool:
    """True when `signature` is what Twilio would send for this request (see `signed_string`)."""
    return signed_string(auth_token, url, params, signature) is not None


def signed_form_string(
    auth_token: str, url: str, pairs: Iterable[tuple[str, str]], signature: str
) -> str | None:
    """`signed_string` for a form POST given as its decoded (name, value) pairs, repeats kept."""
    variants = _port_variants(url)
    if variants is None:
        return None
    return _matched(auth_token, variants, _pairs_part(pairs), signature)


def validate_form(
    auth_token: str, url: str, pairs: Iterable[tuple[str, str]], signature: str
) -> bool:
    """`validate` for a form POST given as its decoded (name, value) pairs, repeats kept."""
    return signed_form_string(auth_token, url, pairs, signature) is not None


def _matched(auth_token: str, variants: tuple[str, str], part: str, signature: str) -> str | None:
    # Evaluate both variants before choosing, so timing does not reveal which one matched.
    # The params part is built once: only the URL differs between the two.
    texts = [v + part for v in variants]
    matches = [_equal(_sign(auth_token, text), signature) for text in texts]
    return next((text for text, ok in zip(texts, matches, strict=True) if ok), None)
