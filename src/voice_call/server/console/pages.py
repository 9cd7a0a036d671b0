"""The console's pages and its login: HTML templates filled server-side, and static files.

Pages hold no call data (their scripts fetch it from the API), only the CSRF token in a
`<meta>` tag. Login is by the RPC token (a form, with a double-submit CSRF cookie of its own)
or by a one-time link from `voicecall console`; both set the session cookie and go to
/console. The templates and static files ship inside the wheel (package data).
"""

from __future__ import annotations

import html
import re
import secrets
from importlib import resources
from string import Template
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from voice_call.runtime import Runtime
from voice_call.security.rpc_token import token_matches
from voice_call.server.console.guard import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    refuse_write,
    same_origin,
    secured,
    session_of,
    set_cookie,
)
from voice_call.server.console.sessions import SESSION_TTL_S, ConsoleSessions
from voice_call.server.limits import BodyRejected, Limits, read_body
from voice_call.server.responses import json_error

_PACKAGE = resources.files("voice_call.server.console")
_STATIC_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\.(js|css|svg)")
_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
LINK_USED = (
    "This login link was already used or has expired (links work once, within 60 s): "
    "run `voicecall console` for a new one, or log in with the RPC token."
)
TOKEN_WRONG = "That is not the RPC token: it is the rpc-token file in the state folder."
LOGIN_EXPIRED = "The login form expired: log in again."
LOGIN_FORM_MAX_BYTES = 4096


def _template(name: str) -> Template:
    return Template((_PACKAGE / "templates" / name).read_text(encoding="utf-8"))


def _page(name: str, status: int = 200, **values: str) -> Response:
    escaped = {k: html.escape(v, quote=True) for k, v in values.items()}
    body = _template(name).substitute(escaped)
    return secured(Response(body, status, media_type="text/html; charset=utf-8"))


class ConsolePages:
    def __init__(self, runtime: Runtime, sessions: ConsoleSessions, limits: Limits) -> None:
        self.runtime = runtime
        self.sessions = sessions
        self.limits = limits

    async def calls(self, request: Request) -> Response:
        session = session_of(request, self.sessions)
        if session is None:
            return self._login_form(request)
        return _page("calls.html", csrf=session.csrf)

    async def call(self, request: Request) -> Response:
        session = session_of(request, self.sessions)
        call_id = request.path_params["call_id"]
        if session is None:
            return secured(RedirectResponse("/console", 303))
        if not 1 <= len(call_id) <= 128:
            return secured(json_error(404, "no such call: a call id is 1 to 128 characters"))
        return _page("call.html", csrf=session.csrf, call_id=call_id)

    async def link_login(self, request: Request) -> Response:
        code = request.query_params.get("code", "")
        if not code or not self.sessions.redeem_link_code(code):
            return self._login_form(request, LINK_USED, 401)
        return self._logged_in(request)

    async def token_login(self, request: Request) -> Response:
        if not same_origin(request):
            return self._login_form(request, "Cross-origin login refused.", 403)
        try:
            body = await read_body(request, LOGIN_FORM_MAX_BYTES, self.limits.body_timeout_s)
        except BodyRejected as exc:
            return secured(json_error(exc.status_code, exc.message))
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        expected_csrf = request.cookies.get(LOGIN_COOKIE)
        csrf = form.get("csrf", [""])[0]
        if not expected_csrf or not token_matches(expected_csrf, csrf):
            return self._login_form(request, LOGIN_EXPIRED, 403)
        token = form.get("token", [""])[0].strip()
        if not self.runtime.rpc_token or not token_matches(self.runtime.rpc_token, token):
            return self._login_form(request, TOKEN_WRONG, 401)
        return self._logged_in(request)

    async def logout(self, request: Request) -> Response:
        session_id = request.cookies.get(SESSION_COOKIE, "")
        refused = refuse_write(request, self.sessions.get(session_id))
        if refused is not None:
            return refused
        self.sessions.close(session_id)
        response = secured(Response(status_code=204))
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        path = _PACKAGE / "static" / name
        if not _STATIC_NAME.fullmatch(name) or not path.is_file():
            return secured(json_error(404, "not found"))
        kind = name.rpartition(".")[2]
        return secured(Response(path.read_bytes(), media_type=_TYPES[kind]))

    def _logged_in(self, request: Request) -> Response:
        session_id, _ = self.sessions.open()
        response = secured(RedirectResponse("/console", 303))
        set_cookie(response, request, SESSION_COOKIE, session_id, int(SESSION_TTL_S))
        response.delete_cookie(LOGIN_COOKIE, path="/console")
        return response

    def _login_form(self, request: Request, error: str = "", status: int = 200) -> Response:
        csrf = secrets.token_urlsafe(24)
        response = _page("login.html", status, csrf=csrf, error=error)
        set_cookie(response, request, LOGIN_COOKIE, csrf, 3600)
        return response
