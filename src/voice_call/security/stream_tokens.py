"""Per-call media-stream tokens: signed, short-lived, bound to one call, good for one stream.

A token is `<call>.<expiry, unix seconds>.<grant>.<signature>`, the signature being HMAC-SHA256
(key: the configured `streaming.tokenSecret`, else a random per-process key) over a label, the
call, the expiry and the grant, base64url without padding. It is minted when we hand the carrier
a stream URL (TwiML, Telnyx dial/answer, Plivo XML) and checked when the carrier opens the
socket, so a socket that was not set up by us for that call, or that comes too late, is refused.
`<call>` is our call id, or the carrier's when the answer that hands the stream out does not
know ours (a Twilio or Plivo inbound call's Voice/answer request): the media route finds the
call in the store either way, so no instance has to remember which call a request was for.

Single use: the grant names what the token allows, one stream. `ANSWER` is the call's answer
stream (every answer token of a call, however often the answer was retried, shares it); any
other mint gets a random grant. The media route spends `(call, grant)` when it admits a stream,
as an event whose dedupe key is `spent_key`, written through the manager to the store: the
store's unique dedupe keys make spending atomic, and every instance that shares the store (the
only way several instances can serve one call's webhooks) sees it spent. A spent key outlives
the token (it is kept with the call's events), so a token never opens a second stream.

URL-safe throughout: it goes into a query string (Telnyx, Plivo) or a TwiML `<Parameter>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_TTL_S = 120
MAX_TOKEN_CHARS = 256
_LABEL = b"voicecall-stream-v1\n"
ANSWER = "answer"  # the grant of a call's answer stream: one per call
_CALL = r"[A-Za-z0-9_-][A-Za-z0-9_.:-]{0,127}"
_GRANT = r"[A-Za-z0-9_-]{1,32}"
_SHAPE = re.compile(rf"({_CALL})\.([0-9]{{1,12}})\.({_GRANT})\.([A-Za-z0-9_-]{{43}})")


class TokenProblem(StrEnum):
    MISSING = "missing stream token"
    MALFORMED = "malformed stream token"
    BAD_SIGNATURE = "invalid stream token"
    EXPIRED = "stream token expired"
    OTHER_CALL = "stream token is for another call"
    SPENT = "stream token already used"


@dataclass(frozen=True)
class TokenCheck:
    call_id: str | None  # the call the token was minted for, when it verified
    problem: TokenProblem | None = None
    grant: str | None = None  # what it allows (ANSWER, or one random stream), when it verified

    @property
    def ok(self) -> bool:
        return self.problem is None


def spent_key(call_id: str, grant: str) -> str:
    """The dedupe key that marks `grant` of our call `call_id` as used."""
    return f"stream-token:{call_id}:{grant}"


class StreamTokens:
    def __init__(
        self,
        secret: str | bytes | None = None,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        now: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(secret, str):
            secret = secret.encode()
        # No configured secret: a fresh one per process. Tokens only live seconds, and every
        # component that mints or checks them shares this object through the Runtime.
        self._key = secret or secrets.token_bytes(32)
        if len(self._key) < 16:
            raise ValueError("streaming.tokenSecret must be at least 16 characters")
        self.ttl_s = ttl_s
        self._now = now

    def _sign(self, call_id: str, expiry: int, grant: str) -> str:
        message = _LABEL + f"{call_id}\n{expiry}\n{grant}".encode()
        mac = hmac.new(self._key, message, hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    def mint(self, call_id: str, ttl_s: float | None = None, *, grant: str | None = None) -> str:
        """A token for one stream of `call_id`; `grant`: ANSWER for the call's answer stream,
        else (None) a stream of its own."""
        if not re.fullmatch(_CALL, call_id):
            raise ValueError(f"call id {call_id!r} cannot be put in a stream token")
        grant = grant or secrets.token_urlsafe(12)
        if not re.fullmatch(_GRANT, grant):
            raise ValueError(f"grant {grant!r} cannot be put in a stream token")
        expiry = int(self._now() + (self.ttl_s if ttl_s is None else ttl_s))
        return f"{call_id}.{expiry}.{grant}.{self._sign(call_id, expiry, grant)}"

    def check(self, token: str | None, expected_call_id: str | None = None) -> TokenCheck:
        """Verify `token` (and, when given, that it was minted for `expected_call_id`)."""
        if not token:
            return TokenCheck(None, TokenProblem.MISSING)
        match = _SHAPE.fullmatch(token) if len(token) <= MAX_TOKEN_CHARS else None
        if match is None:
            return TokenCheck(None, TokenProblem.MALFORMED)
        call_id, expiry_text, grant, signature = match.groups()
        expiry = int(expiry_text)
        if not hmac.compare_digest(signature, self._sign(call_id, expiry, grant)):
            return TokenCheck(None, TokenProblem.BAD_SIGNATURE)
        if self._now() >= expiry:
            return TokenCheck(call_id, TokenProblem.EXPIRED)
        expected = None if expected_call_id is None else expected_call_id.encode()
        if expected is not None and not hmac.compare_digest(call_id.encode(), expected):
            return TokenCheck(call_id, TokenProblem.OTHER_CALL)
        return TokenCheck(call_id, grant=grant)
