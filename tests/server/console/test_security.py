"""The console's guards over plain HTTP: login, one-time links, CSRF, Origin, Host, headers."""

from __future__ import annotations

import httpx
import pytest

from tests.server.console.stack import logged_in, login_link
from voice_call.runtime import Runtime
from voice_call.server.console.guard import CSP
from voice_call.server.console.sessions import LINK_TTL_S, ConsoleSessions
from voice_call.server.serve import RunningServer

READS = [
    "/console/api/calls",
    "/console/api/calls/x",
    "/console/api/history",
    "/console/api/events",
]


@pytest.mark.parametrize("path", READS)
async def test_nothing_is_read_without_login(vc_http: httpx.AsyncClient, path: str) -> None:
    response = await vc_http.get(path)
    assert response.status_code == 401
    assert "log in first" in response.json()["error"]
    assert response.headers["cache-control"] == "no-store"


async def test_pages_without_login_show_only_the_login_form(vc_http: httpx.AsyncClient) -> None:
    page = await vc_http.get("/console")
    assert page.status_code == 200
    assert 'action="/console/login"' in page.text and "csrf-token" not in page.text
    call_page = await vc_http.get("/console/calls/some-call")
    assert call_page.status_code == 303 and call_page.headers["location"] == "/console"


async def test_a_control_without_login_is_refused_and_changes_nothing(
    vc_http: httpx.AsyncClient, vc_runtime: Runtime
) -> None:
    response = await vc_http.post("/console/api/commands/initiate", json={"message": "hi"})
    assert response.status_code == 401
    assert await vc_runtime.store.list_recent() == []


async def test_a_one_time_link_works_once(vc_http: httpx.AsyncClient, vc_runtime: Runtime) -> None:
    link = await login_link(vc_http, vc_runtime)
    first = await vc_http.get(link)
    assert first.status_code == 303
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http on loopback: a Secure cookie would never return
    async with httpx.AsyncClient(base_url=str(vc_http.base_url)) as other:
        replayed = await other.get(link)
        assert replayed.status_code == 401
        assert "already used or has expired" in replayed.text
        assert (await other.get("/console/api/calls")).status_code == 401


async def test_minting_a_link_needs_the_rpc_token(vc_http: httpx.AsyncClient) -> None:
    response = await vc_http.post(
        "/console/api/login-links", headers={"Authorization": "Bearer wrong"}
    )
    assert response.status_code == 401


def test_a_link_expires_after_60_seconds() -> None:
    now = [1000.0]
    sessions = ConsoleSessions(clock=lambda: now[0])
    fresh, stale = sessions.mint_link_code(), sessions.mint_link_code()
    now[0] += LINK_TTL_S - 1
    assert sessions.redeem_link_code(fresh)
    now[0] += 2
    assert not sessions.redeem_link_code(stale)
    assert not sessions.redeem_link_code("made-up")


async def test_the_cookie_is_secure_over_https(
    vc_http: httpx.AsyncClient, vc_runtime: Runtime
) -> None:
    link = await login_link(vc_http, vc_runtime)
    response = await vc_http.get(link, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in response.headers["set-cookie"]


async def test_a_control_without_the_csrf_token_is_refused(
    vc_http: httpx.AsyncClient, vc_runtime: Runtime
) -> None:
    csrf = await logged_in(vc_http, vc_runtime)
    for headers in ({}, {"X-CSRF-Token": "wrong"}):
        response = await vc_http.post(
            "/console/api/commands/initiate", json={"message": "hi"}, headers=headers
        )
        assert response.status_code == 403
        assert "CSRF token" in response.json()["error"]
    foreign = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    response = await vc_http.post(
        "/console/api/commands/initiate", json={"message": "hi"}, headers=foreign
    )
    assert response.status_code == 403 and "cross-origin" in response.json()["error"]
    assert await vc_runtime.store.list_recent() == []
    logout = await vc_http.post("/console/logout")
    assert logout.status_code == 403


async def test_logout_ends_the_session(vc_http: httpx.AsyncClient, vc_runtime: Runtime) -> None:
    csrf = await logged_in(vc_http, vc_runtime)
    assert (await vc_http.get("/console/api/calls")).status_code == 200
    response = await vc_http.post("/console/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    assert (await vc_http.get("/console/api/calls")).status_code == 401


async def test_login_with_the_rpc_token(vc_http: httpx.AsyncClient, vc_runtime: Runtime) -> None:
    form = await vc_http.get("/console")
    marker = 'name="csrf" value="'
    start = form.text.index(marker) + len(marker)
    csrf = form.text[start : form.text.index('"', start)]
    wrong = await vc_http.post("/console/login", data={"csrf": csrf, "token": "nope"})
    assert wrong.status_code == 401 and "not the RPC token" in wrong.text
    async with httpx.AsyncClient(base_url=str(vc_http.base_url)) as cookieless:
        no_csrf = await cookieless.post(
            "/console/login", data={"csrf": csrf, "token": vc_runtime.rpc_token}
        )
    assert no_csrf.status_code == 403
    vc_http.cookies.clear()
    form = await vc_http.get("/console")
    start = form.text.index(marker) + len(marker)
    csrf = form.text[start : form.text.index('"', start)]
    right = await vc_http.post("/console/login", data={"csrf": csrf, "token": vc_runtime.rpc_token})
    assert right.status_code == 303
    assert (await vc_http.get("/console/api/calls")).status_code == 200


async def test_every_answer_is_uncached_and_under_a_strict_csp(
    vc_http: httpx.AsyncClient, vc_runtime: Runtime
) -> None:
    await logged_in(vc_http, vc_runtime)
    for path in [
        "/console",
        "/console/calls/x",
        "/console/api/calls",
        "/console/api/calls/x",
        "/console/static/common.js",
        "/console/static/calls.js",
        "/console/static/console.css",
        "/console/static/nope.js",
    ]:
        response = await vc_http.get(path)
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["content-security-policy"] == CSP, path
        assert response.headers["referrer-policy"] == "same-origin", path
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP


async def test_a_foreign_host_is_refused(vc_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=vc_server.url) as http:
        response = await http.get("/console", headers={"Host": "evil.example"})
    assert response.status_code == 421


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/console/api/history?since=yesterday", "since must be a date"),
        ("/console/api/history?state=listening", "state must be an end state"),
        ("/console/api/history?number=abc", "number must be digits"),
        ("/console/api/events?since=-1", "since must be a non-negative integer"),
        ("/console/api/calls/nope", "no call with id"),
        ("/console/static/..%2Fapi.py", "not found"),
    ],
)
async def test_bad_reads_are_4xx_with_a_reason(
    vc_http: httpx.AsyncClient, vc_runtime: Runtime, path: str, reason: str
) -> None:
    await logged_in(vc_http, vc_runtime)
    response = await vc_http.get(path)
    assert 400 <= response.status_code < 500, response.text
    assert reason in response.json()["error"]
