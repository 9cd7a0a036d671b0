"""Telnyx webhooks through our real server: what is refused, and what a replay changes (nothing)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.providers.telnyx.stack import (
    CALLEE,
    TelnyxStack,
    hooks_of,
    signed_headers,
    telnyx_stack,
    wire_body,
)
from voice_call.models import EventType, Speaker
from voice_call.providers.telnyx.webhooks import encode_client_state
from voice_call.security.signatures import telnyx as signatures
from voice_call.sim.callee import CalleeScript

SCRIPT = CalleeScript(replies=("Hello there.",), answer_delay_ms=100, reply_delay_ms=100)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[TelnyxStack, str]]:
    """A conversation call, answered, whose callee has said one line."""
    async with telnyx_stack(tmp_path, script=SCRIPT) as stack:
        started = await stack.call(
            "voicecall.initiate", to=CALLEE, message="Hi, it's the bank.", mode="conversation"
        )
        await stack.wait_user_lines(started["callId"], 1)
        yield stack, started["callId"]


def envelope(pid: str, call_id: str, event_type: str, **payload: Any) -> bytes:
    data = {
        "record_type": "event",
        "event_type": event_type,
        "id": f"evt-{time.monotonic_ns()}",
        "occurred_at": "2026-01-01T00:00:00.000000Z",
        "payload": {
            "call_control_id": pid,
            "client_state": encode_client_state(call_id),
            **payload,
        },
    }
    return json.dumps({"data": data, "meta": {"attempt": 1}}).encode()


def transcription(text: str) -> dict[str, Any]:
    return {"transcription_data": {"transcript": text, "is_final": True, "confidence": 0.9}}


async def footprint(
    stack: TelnyxStack, call_id: str, text: str, event_type: str = EventType.SPEECH
) -> tuple[int, int]:
    """How often `text` was logged as an `event_type` event, and heard as a caller's line: all
    a replayed, forged or malformed webhook could change. Only this is compared, since the call
    goes on logging its own events (the bot's reply, …) meanwhile."""
    events = await stack.runtime.store.events(call_id=call_id)
    logged = sum(e.type == event_type and text in json.dumps(e.data) for e in events)
    record = await stack.record(call_id)
    heard = sum(e.speaker == Speaker.USER and e.text == text for e in record.transcript)
    return logged, heard


def heard_in(hook: Any) -> str:
    return str(hook.params["data"]["payload"]["transcription_data"]["transcript"])


async def test_replayed_webhook_changes_nothing(live: tuple[TelnyxStack, str]) -> None:
    stack, call_id = live
    record = await stack.record(call_id)
    assert record.provider_call_id is not None
    [hook] = [
        h for h in hooks_of(stack.emu, record.provider_call_id) if h.kind == "call.transcription"
    ]
    assert await footprint(stack, call_id, heard_in(hook)) == (1, 1)

    replay = await stack.post(wire_body(hook), hook.headers)  # same bytes, same signature
    assert replay.status_code == 200
    assert replay.text == hook.response_body  # the first answer, from the replay cache
    await stack.runtime.manager.settle()
    assert await footprint(stack, call_id, heard_in(hook)) == (1, 1)


async def test_redelivered_event_applies_once(live: tuple[TelnyxStack, str]) -> None:
    """A Telnyx retry has a new attempt number, so a new body and signature: the event id
    still names it, and the manager applies it once."""
    stack, call_id = live
    record = await stack.record(call_id)
    assert record.provider_call_id is not None
    [hook] = [
        h for h in hooks_of(stack.emu, record.provider_call_id) if h.kind == "call.transcription"
    ]
    retried = {**hook.params, "meta": {**hook.params["meta"], "attempt": 2}}
    body = json.dumps(retried).encode()
    assert await footprint(stack, call_id, heard_in(hook)) == (1, 1)

    response = await stack.post(body, signed_headers(stack.emu.private_key, body))
    assert response.status_code == 200
    assert response.json() == {"results": ["duplicate"]}
    await stack.runtime.manager.settle()
    assert await footprint(stack, call_id, heard_in(hook)) == (1, 1)


async def test_a_fresh_signed_event_is_applied(live: tuple[TelnyxStack, str]) -> None:
    """The control for the refusals below: the same kind of request, correctly signed."""
    stack, call_id = live
    pid = (await stack.record(call_id)).provider_call_id
    assert pid is not None
    body = envelope(pid, call_id, "call.transcription", **transcription("Forged?"))
    response = await stack.post(body, signed_headers(stack.emu.private_key, body))
    assert response.status_code == 200
    assert await footprint(stack, call_id, "Forged?") == (1, 1)


@pytest.mark.parametrize("attack", ["other-key", "stale", "future", "tampered", "no-pipe"])
async def test_refused_signatures_apply_nothing(live: tuple[TelnyxStack, str], attack: str) -> None:
    stack, call_id = live
    pid = (await stack.record(call_id)).provider_call_id
    assert pid is not None
    body = envelope(pid, call_id, "call.transcription", **transcription("Forged!"))
    now = int(time.time())
    if attack == "other-key":
        headers = signed_headers(signatures.generate_keypair()[0], body)
    elif attack == "stale":
        headers = signed_headers(stack.emu.private_key, body, timestamp=now - 400)
    elif attack == "future":
        headers = signed_headers(stack.emu.private_key, body, timestamp=now + 400)
    elif attack == "tampered":
        headers = signed_headers(stack.emu.private_key, body)
        body = body.replace(b"Forged!", b"Tamper!")
    else:  # a signature over timestamp+body without the "|" separator
        headers = signed_headers(stack.emu.private_key, body)
        raw = stack.emu.private_key.sign(headers[signatures.TIMESTAMP_HEADER].encode() + body)
        headers[signatures.SIGNATURE_HEADER] = base64.b64encode(raw).decode()
    response = await stack.post(body, headers)
    assert response.status_code == 401
    reason = response.json()["error"]
    expected = {
        "other-key": "signature mismatch",
        "stale": "timestamp too old",
        "future": "timestamp in the future",
        "tampered": "signature mismatch",
        "no-pipe": "signature mismatch",
    }[attack]
    assert expected in reason
    await stack.runtime.manager.settle()
    assert await footprint(stack, call_id, "Forged!") == (0, 0)
    assert await footprint(stack, call_id, "Tamper!") == (0, 0)


async def test_missing_signature_headers_get_401_before_the_body_is_read(tmp_path: Path) -> None:
    async with telnyx_stack(tmp_path) as stack:
        for headers in ("", f"{signatures.TIMESTAMP_HEADER}: {int(time.time())}\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
            # Announce a large body and send one byte of it: an answer can only come from a
            # gate that did not wait for the body.
            writer.write(
                (
                    "POST /voice/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Content-Type: application/json\r\n{headers}"
                    "Content-Length: 50000\r\n\r\n{"
                ).encode()
            )
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), timeout=3)
            writer.close()
            assert status.startswith(b"HTTP/1.1 401"), status


async def test_foreign_client_state_is_ignored_but_the_call_id_still_maps(
    live: tuple[TelnyxStack, str],
) -> None:
    """A client_state we did not set names no call; the call_control_id still finds ours."""
    stack, call_id = live
    pid = (await stack.record(call_id)).provider_call_id
    assert pid is not None
    body = envelope(pid, call_id, "call.dtmf.received", digit="5")
    data = json.loads(body)
    data["data"]["payload"]["client_state"] = "bm90IG91cnMhIQ=="  # "not ours!!"
    body = json.dumps(data).encode()
    response = await stack.post(body, signed_headers(stack.emu.private_key, body))
    assert response.status_code == 200
    assert response.json() == {"results": ["applied"]}
    await stack.wait_event(call_id, "call.dtmf")


async def test_malformed_but_signed_body_is_400(live: tuple[TelnyxStack, str]) -> None:
    stack, call_id = live
    body = b'{"data": {"event_type": "call.answered", "payload": {"call_control_id": 5}}}'
    answered = await footprint(stack, call_id, "", EventType.ANSWERED)
    response = await stack.post(body, signed_headers(stack.emu.private_key, body))
    assert response.status_code == 400
    assert "call_control_id" in response.json()["error"]
    await stack.runtime.manager.settle()
    assert await footprint(stack, call_id, "", EventType.ANSWERED) == answered
