"""An inbound Twilio call's stream, when Twilio retries its Voice URL request (issue 15, item 8).

Twilio's own Voice URL request never names our call id. The reply must still lead to a stream
that attaches to the call when the retry is answered by an instance that did not see the first
delivery (here: the replay cache forgotten, as on another instance or after a restart), so
nothing may live in a per-process map between the request and its reply. Requests are signed
as Twilio signs them and sent over real sockets to a running server.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import unescape
from pathlib import Path
from typing import Any

import httpx

from tests.media.carrier import FakeCarrier
from tests.media.stack import KEY, media_config
from tests.support import free_port, merge
from voice_call.config import parse_config
from voice_call.runtime import Runtime
from voice_call.security.replay import ReplayCache
from voice_call.security.signatures.twilio import compute_signature
from voice_call.server.serve import start_background
from voice_call.sim.openai import FakeOpenAI

AUTH_TOKEN = "twilio-auth-token-for-tests"
APP_NUMBER = "+15550001234"


@asynccontextmanager
async def twilio_server(tmp_path: Path) -> AsyncIterator[tuple[Runtime, str, FakeOpenAI]]:
    async with FakeOpenAI(KEY) as fake:
        port = free_port()
        public = f"http://127.0.0.1:{port}/voice/webhook"
        raw: dict[str, Any] = merge(
            media_config(fake),
            {
                "provider": "twilio",
                "fromNumber": APP_NUMBER,
                "twilio": {
                    "accountSid": "AC" + "1" * 32,
                    "authToken": AUTH_TOKEN,
                    "apiBaseUrl": "http://127.0.0.1:9",  # never reached: inbound needs no REST
                },
                "serve": {"port": port, "bind": "127.0.0.1"},
                "publicUrl": public,
                "inboundPolicy": "open",
            },
        )
        runtime = Runtime(parse_config(raw, env={}), tmp_path / "home")
        server = await start_background(runtime, announce=False)
        try:
            yield runtime, public, fake
        finally:
            await server.stop()


async def post(client: httpx.AsyncClient, url: str, form: dict[str, str]) -> str:
    headers = {"X-Twilio-Signature": compute_signature(AUTH_TOKEN, url, form)}
    response = await client.post(url, data=form, headers=headers)
    assert response.status_code == 200, response.text
    return response.text


async def test_a_retried_inbound_voice_request_still_streams_to_the_same_call(
    tmp_path: Path,
) -> None:
    sid = "CA" + uuid.uuid4().hex
    inbound = {"CallSid": sid, "From": "+15557654321", "To": APP_NUMBER,
               "Direction": "inbound", "CallStatus": "ringing"}  # fmt: skip
    async with twilio_server(tmp_path) as (runtime, public, _), httpx.AsyncClient() as http:
        await post(http, public, inbound)  # its answer never reached Twilio
        runtime.replay = ReplayCache()  # the retry reaches an instance that did not see it
        retried = await post(http, public, inbound)
        found = re.search(r"<Redirect[^>]*>([^<]+)</Redirect>", retried)
        assert found is not None, retried
        answered = await post(
            http, unescape(found.group(1)), inbound | {"CallStatus": "in-progress"}
        )
        stream = re.search(
            r'<Stream url="([^"]+)"><Parameter name="token" value="([^"]+)"', answered
        )
        assert stream is not None, answered
        record = await runtime.store.find_by_provider_call_id("twilio", sid)
        assert record is not None
        carrier = FakeCarrier("twilio", unescape(stream.group(1)), sid, unescape(stream.group(2)))
        await carrier.open()
        assert await runtime.media.wait_for(record.call_id, 5) is not None  # the same call
        assert not carrier.closed.is_set()
        await carrier.close()
