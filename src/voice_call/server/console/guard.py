"""The console's HTTP guards: the headers on every answer, the session cookie, CSRF and Origin.

Every console answer carries a strict Content-Security-Policy (scripts and styles only from
our own files: no inline code, nothing from elsewhere), `Cache-Control: no-store` (transcripts
are personal data) and no Referer to other sites (a login link must not leak through one).
The Host header is checked before any of this by `server/host_guard.py`, as for every route.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from voice_call.server.console.sessions import ConsoleSessions, Session, csrf_matches
from voice_call.server.responses import json_error

SESSION_COOKIE = "vc_console"
LOGIN_COOKIE = "vc_console_login"  # double-submit CSRF token of the login form
CSRF_HEADER = "x-csrf-token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",  # no Referer (a login link) leaves this server
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
LOGIN_REQUIRED = "log in first: run `voicecall console` for a login link, or open /console"
CSRF_REFUSED = (
    "missing or wrong CSRF token: send the X-CSRF-Token header the console page carries "
    "(reload the page if it is stale)"
)
ORIGIN_REFUSED = "cross-origin request refused: the console accepts requests from its own pages"


def secured(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


def over_https(request: Request) -> bool:
    # a proxy's claim can only make the cookie stricter, never looser, so it is believed
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=over_https(request),
    )


def session_of(request: Request, sessions: ConsoleSessions) -> Session | None:
    return sessions.get(request.cookies.get(SESSION_COOKIE))


def same_origin(request: Request) -> bool:
    """A browser names the page's origin on a POST; it must be this server (as the Host says)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None  # "null": a sandboxed or file:// page, never ours
    _, _, rest = origin.partition("://")
    return bool(rest) and rest.lower() == request.headers.get("host", "").lower()


def refuse_write(request: Request, session: Session | None) -> Response | None:
    """The answer that refuses a state-changing request, or None when it may go ahead."""
    if session is None:
        return secured(json_error(401, LOGIN_REQUIRED))
    if not same_origin(request):
        return secured(json_error(403, ORIGIN_REFUSED))
    if not csrf_matches(session, request.headers.get(CSRF_HEADER)):
        return secured(json_error(403, CSRF_REFUSED))
    return None
