"""GET /healthz: ok with the active-call count, and 503 (with no detail) when the store fails."""

from __future__ import annotations

import logging

import httpx
import pytest

from voice_call.runtime import Runtime


async def test_healthz_reports_provider_version_and_active_calls(
    vc_http: httpx.AsyncClient,
) -> None:
    import voice_call

    response = await vc_http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "provider": "mock",
        "version": voice_call.__version__,
        "activeCalls": 0,
    }


async def test_healthz_is_503_when_the_store_is_unavailable(
    vc_http: httpx.AsyncClient,
    vc_runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> list[object]:
        raise OSError("disk I/O error: /secret/path/calls.db")

    monkeypatch.setattr(vc_runtime.manager, "active", broken)
    with caplog.at_level(logging.WARNING, logger="voice_call.server.health"):
        response = await vc_http.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False and body["error"] == "store unavailable"
    assert "activeCalls" not in body
    assert "/secret/path" not in response.text  # unauthenticated: the reason stays in the log
    assert any("store unavailable" in r.getMessage() for r in caplog.records)
