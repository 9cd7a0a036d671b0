"""No downgrade to Plivo's V2 signature over the real server.

V2 covers only `scheme://host/path` + nonce, not the query or the body: a captured V2 pair
signs any body. So a V2-only request is refused unless `plivo.allowV2Signatures` is on, and even
then only a callback that applies nothing passes. The main-account V3 header alone verifies.
"""

from __future__ import annotations

from pathlib import Path

from tests.providers.plivo.stack import AUTH_TOKEN, CALLEE, PlivoStack, plivo_stack
from voice_call.security.signatures import plivo as signatures
from voice_call.sim.callee import CalleeScript

REPLIES = ("Yes, speaking.", "Sure.")
FORGED = "Transfer all my money."


async def _live_conversation(stack: PlivoStack) -> tuple[str, str]:
    started = await stack.call(
        "voicecall.initiate", to=CALLEE, message="Hello.", mode="conversation"
    )
    call_id = started["callId"]
    await stack.wait_user_lines(call_id, 1)
    record = await stack.record(call_id)
    return call_id, str(record.provider_call_id)


def _v2_only(url: str, nonce: str = "44444444444444444444") -> dict[str, str]:
    signature = signatures.sign_v2(AUTH_TOKEN, url, nonce)
    return {"X-Plivo-Signature-V2": signature, "X-Plivo-Signature-V2-Nonce": nonce}


async def _forge_speech(stack: PlivoStack, call_id: str, uuid: str) -> int:
    """A captured action URL with a forged Speech, carrying a valid V2 signature only."""
    action = await stack.wait_hook("action", uuid)
    before = await stack.runtime.store.last_seq()
    forged = dict(action.params, Speech=FORGED, Digits="9")
    response = await stack.post(forged, _v2_only(action.url), action.url)
    await stack.runtime.manager.settle()
    assert await stack.runtime.store.last_seq() == before
    assert FORGED not in [e.text for e in (await stack.record(call_id)).transcript]
    return response.status_code


async def test_v2_only_forged_body_is_refused_by_default(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path, CalleeScript(replies=REPLIES)) as stack:
        call_id, uuid = await _live_conversation(stack)
        assert await _forge_speech(stack, call_id, uuid) == 401


async def test_v2_opt_in_still_refuses_a_callback_that_applies_something(
    tmp_path: Path,
) -> None:
    config = {"plivo": {"allowV2Signatures": True}}
    async with plivo_stack(tmp_path, CalleeScript(replies=REPLIES), config=config) as stack:
        call_id, uuid = await _live_conversation(stack)
        assert await _forge_speech(stack, call_id, uuid) == 401
        hangup = f"{stack.webhook_url}?provider=plivo&flow=hangup&callId={call_id}"
        params = {"CallUUID": uuid, "CallStatus": "completed", "Direction": "outbound"}
        response = await stack.post(params, _v2_only(hangup, "55555555555555555555"), hangup)
        assert response.status_code == 401
        assert not (await stack.record(call_id)).terminal
        # A transfer fetching XML applies nothing: with the opt-in, V2 may serve it.
        fetch = f"{stack.webhook_url}?provider=plivo&flow=listen&callId={call_id}"
        params = {"CallUUID": uuid, "CallStatus": "in-progress", "Direction": "outbound"}
        ok = await stack.post(params, _v2_only(fetch, "66666666666666666666"), fetch)
        assert ok.status_code == 200 and "<GetInput" in ok.text


async def test_v2_signed_emulator_cannot_run_a_call_by_default(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path, signature="v2") as stack:
        started = await stack.call("voicecall.initiate", to=CALLEE, message="V2 refused.")
        await stack.emulator.webhooks.wait_for(lambda h: h.status_code is not None, 5.0)
        hooks = [h for h in stack.hooks() if h.status_code is not None]
        assert hooks and all(h.status_code == 401 for h in hooks)
        record = await stack.record(started["callId"])
        assert record.answered_at is None


async def test_main_account_v3_header_alone_verifies(tmp_path: Path) -> None:
    async with plivo_stack(tmp_path, CalleeScript(replies=REPLIES)) as stack:
        call_id, uuid = await _live_conversation(stack)
        url = f"{stack.webhook_url}?provider=plivo&flow=hangup&callId={call_id}"
        params = {"CallUUID": uuid, "CallStatus": "completed", "Direction": "outbound"}
        nonce = "77777777777777777777"
        headers = {
            "X-Plivo-Signature-Ma-V3": signatures.sign_v3(AUTH_TOKEN, url, params, nonce),
            "X-Plivo-Signature-V3-Nonce": nonce,
        }
        assert (await stack.post(params, headers, url)).status_code == 200
        assert (await stack.wait_ended(call_id)).terminal
