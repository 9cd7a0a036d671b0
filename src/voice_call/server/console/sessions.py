"""Who may use the console: one-time login links and browser sessions, kept in memory.

A login link carries a random code that works once, within `LINK_TTL_S`; redeeming it (or the
RPC token) opens a session: a random id for the HttpOnly cookie and its own CSRF token for
every state-changing request. Nothing is persisted: a server restart logs everyone out, and
no secret that opens the console ever lands on disk besides the RPC token itself.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

LINK_TTL_S = 60.0
SESSION_TTL_S = 12 * 3600.0  # a working day; then log in again
MAX_LINKS = 100  # unredeemed links kept at once (each mint needs the RPC token anyway)
MAX_SESSIONS = 1000


@dataclass
class Session:
    csrf: str
    expires_at: float


class ConsoleSessions:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._links: dict[str, float] = {}  # code → expiry
        self._sessions: dict[str, Session] = {}  # session id → session

    def mint_link_code(self) -> str:
        """A fresh single-use login code, valid for `LINK_TTL_S` seconds."""
        self._drop_expired()
        if len(self._links) >= MAX_LINKS:  # the oldest first: dicts keep insertion order
            del self._links[next(iter(self._links))]
        code = secrets.token_urlsafe(32)
        self._links[code] = self._clock() + LINK_TTL_S
        return code

    def redeem_link_code(self, code: str) -> bool:
        """True once for a live code; a replayed, expired or unknown code is False."""
        self._drop_expired()
        for known in list(self._links):  # constant time per comparison
            if hmac.compare_digest(known.encode(), code.encode()):
                del self._links[known]
                return True
        return False

    def open(self) -> tuple[str, Session]:
        self._drop_expired()
        if len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        session_id = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), self._clock() + SESSION_TTL_S)
        self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None or session.expires_at <= self._clock():
            self._sessions.pop(session_id, None)
            return None
        return session

    def close(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _drop_expired(self) -> None:
        now = self._clock()
        self._links = {c: t for c, t in self._links.items() if t > now}
        self._sessions = {k: s for k, s in self._sessions.items() if s.expires_at > now}


def csrf_matches(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf.encode(), presented.encode())
