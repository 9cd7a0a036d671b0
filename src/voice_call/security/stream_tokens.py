"""Per-call media-stream tokens: signed, short-lived, bound to one call.

A token is `<call id>.<expiry, unix seconds>.<signature>`, the signature being HMAC-SHA256 (key:
the configured `streaming.tokenSecret`, else a random per-process key) over a label, the call id
and the expiry, base64url without padding. It is minted when we hand the carrier a stream URL
(TwiML, Telnyx dial/answer, Plivo XML) and checked when the carrier opens the socket, so a
socket that was not set up by us for that call, or that comes too late, is refused.

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
_SHAPE = re.compile(r"([A-Za-z0-9_-][A-Za-z0-9_.:-]{0,127})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")


class TokenProblem(StrEnum):
    MISSING = "missing stream token"
    MALFORMED = "malformed stream token"
    BAD_SIGNATURE = "invalid stream token"
    EXPIRED = "stream token expired"
    OTHER_CALL = "stream token is for another call"


@dataclass(frozen=True)
class TokenCheck:
    call_id: str | None  # the call the token was minted for, when it verified
    problem: TokenProblem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


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

    def _sign(self, call_id: str, expiry: int) -> str:
        mac = hmac.new(self._key, _LABEL + f"{call_id}\n{expiry}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    def mint(self, call_id: str, ttl_s: float | None = None) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.:-]{0,127}", call_id):
            raise ValueError(f"call id {call_id!r} cannot be put in a stream token")
        expiry = int(self._now() + (self.ttl_s if ttl_s is None else ttl_s))
        return f"{call_id}.{expiry}.{self._sign(call_id, expiry)}"

    def check(self, token: str | None, expected_call_id: str | None = None) -> TokenCheck:
        """Verify `token` (and, when given, that it was minted for `expected_call_id`)."""
        if not token:
            return TokenCheck(None, TokenProblem.MISSING)
        match = _SHAPE.fullmatch(token) if len(token) <= MAX_TOKEN_CHARS else None
        if match is None:
            return TokenCheck(None, TokenProblem.MALFORMED)
        call_id, expiry_text, signature = match.groups()
        expiry = int(expiry_text)
        if not hmac.compare_digest(signature, self._sign(call_id, expiry)):
            return TokenCheck(None, TokenProblem.BAD_SIGNATURE)
        if self._now() >= expiry:
            return TokenCheck(call_id, TokenProblem.EXPIRED)
        expected = None if expected_call_id is None else expected_call_id.encode()
        if expected is not None and not hmac.compare_digest(call_id.encode(), expected):
            return TokenCheck(call_id, TokenProblem.OTHER_CALL)
        return TokenCheck(call_id)
