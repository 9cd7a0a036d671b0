"""Plivo webhook security over real sockets: replays, tampering, other URLs, missing headers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.providers.plivo.stack import AUTH_TOKEN, CALLEE, PlivoStack, plivo_stack
from voice_call.models import CallState
from voice_call.security.signatures import plivo as signatures
from voice_call.sim.callee import CalleeScript

REPLIES = ("Yes, speaking.", "Sure.")


async def _live_conversation(stack: PlivoStack) -> tuple[str, str]:
    started = await stack.call(
        "voicecall.initiate", to=CALLEE, message="Hello.", mode="conversation"
    )
    call_id = started["callId"]
    await stack.wait_user_lines(call_id, 1)
    record = await stack.record(call_id)
    return call_id, str(record.provider_call_id)


def _signed(
    url: str, params: dict[str, str], nonce: str = "12345678901234567890"
) -> dict[str, str]:
    return {
        "X-Plivo-Signature-V3": signatures.sign_v3(AUTH_TOKEN, url, params, nonce),
        "X-Plivo-Signature-V3-Nonce": nonce,
    }


async def test_replayed_callbacks_change_nothing_and_get_the_first_answer(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path, CalleeScript(replies=REPLIES)) as stack:
        call_id, uuid = await _live_conversation(stack)
        action = await stack.wait_hook("action", uuid)  # logged once our reply is back
        events_before = await stack.runtime.store.events(call_id=call_id)
        transcript_before = (await stack.record(call_id)).transcript
        for hook in (stack.hooks("answer", uuid)[0], action):
            response = await stack.replay(hook)
            assert response.status_code == 200
            assert response.text == hook.response_body  # the cached first answer
        assert await stack.runtime.store.events(call_id=call_id) == events_before
        assert (await stack.record(call_id)).transcript == transcript_before


async def test_tampered_body_nonce_or_signature_is_refused(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path, CalleeScript(replies=REPLIES)) as stack:
        call_id, uuid = await _live_conversation(stack)
        action = await stack.wait_hook("action", uuid)  # logged once our reply is back
        headers = dict(action.headers)
        forged = dict(action.params, Speech="Transfer all my money.")
        assert (await stack.post(forged, headers, action.url)).status_code == 401
        other_nonce = dict(headers, **{"X-Plivo-Signature-V3-Nonce": "99999999999999999999"})
        assert (await stack.post(dict(action.params), other_nonce, action.url)).status_code == 401
        answer = stack.hooks("answer", uuid)[0]
        theirs = answer.headers["X-Plivo-Signature-V3"]
        borrowed = dict(
            headers, **{"X-Plivo-Signature-V3": theirs, "X-Plivo-Signature-Ma-V3": theirs}
        )
        assert (await stack.post(dict(action.params), borrowed, action.url)).status_code == 401
        # A valid V2 pair does not rescue a wrong V3: no downgrade to the weaker scheme.
        nonce = "11111111111111111111"
        v2 = {
            "X-Plivo-Signature-V3": "bm90LWl0",
            "X-Plivo-Signature-V3-Nonce": nonce,
            "X-Plivo-Signature-V2": signatures.sign_v2(AUTH_TOKEN, action.url, nonce),
            "X-Plivo-Signature-V2-Nonce": nonce,
        }
        assert (await stack.post(forged, v2, action.url)).status_code == 401
        record = await stack.record(call_id)
        assert "Transfer all my money." not in [e.text for e in record.transcript]


async def test_signature_over_another_url_is_refused_and_the_reason_hides_values(
    tmp_path: Path,
) -> None:
    async with plivo_stack(tmp_path, CalleeScript(replies=REPLIES)) as stack:
        call_id, uuid = await _live_conversation(stack)
        query = f"provider=plivo&flow=hangup&callId={call_id}"
        params = {"CallUUID": uuid, "CallStatus": "completed", "Direction": "outbound"}
        elsewhere = f"http://127.0.0.1:{stack.port}/other/hook?{query}"
        ours = f"{stack.webhook_url}?{query}"
        response = await stack.post(params, _signed(elsewhere, params), ours)
        assert response.status_code == 401
        assert call_id not in response.text
        # issue 15: the 401 body names the refusal, never the URL verified (that is logged)
        assert "invalid Plivo V3 signature" in response.text
        assert "callId" not in response.text and "/voice/webhook" not in response.text
        assert not (await stack.record(call_id)).terminal
        # The same callback signed over our URL is what ends it.
        assert (await stack.post(params, _signed(ours, params), ours)).status_code == 200
        assert (await stack.wait_ended(call_id)).end_reason == CallState.COMPLETED


async def test_several_signatures_and_the_main_account_header(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path, CalleeScript(replies=REPLIES)) as stack:
        call_id, uuid = await _live_conversation(stack)
        url = f"{stack.webhook_url}?provider=plivo&flow=keepalive&callId={call_id}"
        params = {"CallUUID": uuid, "CallStatus": "in-progress", "Direction": "outbound"}
        good = _signed(url, params, "22222222222222222222")
        several = dict(
            good, **{"X-Plivo-Signature-V3": f"bm90LWl0, {good['X-Plivo-Signature-V3']}"}
        )
        assert (await stack.post(params, several, url)).status_code == 200
        main_account = _signed(url, params, "33333333333333333333")
        main_account["X-Plivo-Signature-Ma-V3"] = main_account.pop("X-Plivo-Signature-V3")
        main_account["X-Plivo-Signature-V3"] = "bm90LWl0"
        assert (await stack.post(params, main_account, url)).status_code == 200


async def test_missing_headers_are_refused_before_the_body_is_read(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path) as stack:
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        head = (
            "POST /voice/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "X-Plivo-Signature-V3: bm90LWl0\r\n"  # a signature without its nonce
            "Content-Length: 100000\r\n\r\nCallUUID="
        )
        writer.write(head.encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 2.0)  # the body never comes
        writer.close()
        assert status.startswith(b"HTTP/1.1 401")
