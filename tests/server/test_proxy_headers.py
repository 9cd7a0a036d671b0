"""Forwarding headers follow our `webhookSecurity` rules only: uvicorn's own proxy handling (by
default it believes X-Forwarded-For/-Proto from 127.0.0.1) is off in `voicecall serve` and in
`voicecall mcp --http`, so a loopback peer cannot change the client address or the scheme a
signature is verified over, and a trusted local proxy keeps its own address."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from click.testing import CliRunner

from tests.providers.twilio.stack import twilio_stack
from voice_call.cli.main import cli
from voice_call.server.http_limits import LimitedHttpProtocol

PUBLIC_HOST = "voice.example.com"
# a status callback for a call we do not know: verified first, then acknowledged
PARAMS = {"CallSid": "CA" + "0" * 32, "CallStatus": "completed", "AccountSid": "AC" + "5e1f" * 8}


async def post_signed(port: int, signature: str, headers: dict[str, str]) -> httpx.Response:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
        **headers,
    }
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        return await http.post(
            f"http://127.0.0.1:{port}/voice/webhook",
            content=urlencode(PARAMS).encode(),
            headers=headers,
        )


async def test_a_loopback_peer_cannot_switch_the_verified_scheme(tmp_path: Path) -> None:
    """Forwarding headers untrusted: the request is verified over the URL it came in on."""
    async with twilio_stack(tmp_path, publicUrl="") as stack:
        signature = stack.sign(stack.webhook, PARAMS)  # http://127.0.0.1:port/voice/webhook
        spoofed = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
        response = await post_signed(stack.port, signature, spoofed)
        assert response.status_code == 200, response.text


async def test_a_trusted_local_proxy_keeps_its_own_address(tmp_path: Path) -> None:
    """A proxy on 127.0.0.1 listed in trustedProxyIPs appends X-Forwarded-For: the carrier's
    signature over the public https URL verifies (uvicorn used to replace the peer with the
    forwarded address, which then was not a trusted proxy: 401)."""
    security = {
        "allowedHosts": [PUBLIC_HOST],
        "trustForwardingHeaders": True,
        "trustedProxyIPs": ["127.0.0.1"],
    }
    async with twilio_stack(tmp_path, publicUrl="", webhookSecurity=security) as stack:
        signature = stack.sign(f"https://{PUBLIC_HOST}/voice/webhook", PARAMS)
        forwarded = {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": PUBLIC_HOST,
            "X-Forwarded-For": "203.0.113.9",
        }
        response = await post_signed(stack.port, signature, forwarded)
        assert response.status_code == 200, response.text


def test_mcp_over_http_leaves_forwarding_headers_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[uvicorn.Config] = []

    async def serve(self: uvicorn.Server, sockets: Any = None) -> None:
        seen.append(self.config)

    monkeypatch.setattr(uvicorn.Server, "serve", serve)
    monkeypatch.setenv("VOICECALL_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["mcp", "--http", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert len(seen) == 1 and seen[0].proxy_headers is False
    http = seen[0].http
    assert isinstance(http, type) and issubclass(http, LimitedHttpProtocol)  # bounded heads too
