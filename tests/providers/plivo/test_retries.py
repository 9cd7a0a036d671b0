"""A Plivo retry carries a fresh nonce (and so a fresh V3 signature) for the same callback:
over the real server it must be applied once, keyed by what Plivo signed minus the nonce."""

from __future__ import annotations

from pathlib import Path

from tests.providers.plivo.stack import AUTH_TOKEN, CALLEE, PlivoStack, plivo_stack
from voice_call.security.signatures import plivo as signatures
from voice_call.sim.callee import CalleeScript

REPLIES = ("Yes, speaking.", "Sure.")


def _signed(url: str, params: dict[str, str], nonce: str) -> dict[str, str]:
    return {
        "X-Plivo-Signature-V3": signatures.sign_v3(AUTH_TOKEN, url, params, nonce),
        "X-Plivo-Signature-V3-Nonce": nonce,
    }


async def _live_conversation(stack: PlivoStack) -> tuple[str, str]:
    started = await stack.call(
        "voicecall.initiate", to=CALLEE, message="Hello.", mode="conversation"
    )
    call_id = started["callId"]
    await stack.wait_user_lines(call_id, 1)
    return call_id, str((await stack.record(call_id)).provider_call_id)


async def test_a_retried_speech_callback_with_a_new_nonce_is_applied_once(
    tmp_path: Path,
) -> None:
    async with plivo_stack(tmp_path, CalleeScript(replies=REPLIES)) as stack:
        call_id, uuid = await _live_conversation(stack)
        url = f"{stack.webhook_url}?provider=plivo&flow=input&callId={call_id}&n=retry1"
        params = {
            "CallUUID": uuid,
            "CallStatus": "in-progress",
            "Direction": "outbound",
            "Speech": "Said only once.",
            "Digits": "5",
        }
        first = await stack.post(params, _signed(url, params, "11111111111111111111"), url)
        assert first.status_code == 200
        await stack.runtime.manager.settle()
        after_first = await stack.runtime.store.last_seq()
        retry = await stack.post(params, _signed(url, params, "22222222222222222222"), url)
        assert retry.status_code == 200
        assert retry.text == first.text  # the first answer, as for any replay
        await stack.runtime.manager.settle()
        assert await stack.runtime.store.last_seq() == after_first
        heard = [e.text for e in (await stack.record(call_id)).transcript]
        assert heard.count("Said only once.") == 1


async def test_a_retry_with_a_new_nonce_after_the_replay_cache_forgot_is_applied_once(
    tmp_path: Path,
) -> None:
    async with plivo_stack(tmp_path, CalleeScript(replies=REPLIES)) as stack:
        call_id, uuid = await _live_conversation(stack)
        url = f"{stack.webhook_url}?provider=plivo&flow=input&callId={call_id}&n=retry2"
        params = {"CallUUID": uuid, "CallStatus": "in-progress", "Speech": "Once, durably."}
        assert (await stack.post(params, _signed(url, params, "3" * 20), url)).status_code == 200
        await stack.runtime.manager.settle()
        after_first = await stack.runtime.store.last_seq()
        stack.runtime.replay._entries.clear()  # ten minutes later: only the store remembers
        assert (await stack.post(params, _signed(url, params, "4" * 20), url)).status_code == 200
        await stack.runtime.manager.settle()
        assert await stack.runtime.store.last_seq() == after_first
        heard = [e.text for e in (await stack.record(call_id)).transcript]
        assert heard.count("Once, durably.") == 1
