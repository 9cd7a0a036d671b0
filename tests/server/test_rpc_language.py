"""`voicecall.initiate`'s `language`: stored on the call, a bad one refused (-32602)."""

from __future__ import annotations

from tests.server.stack import Rpc
from tests.server.test_rpc import TO, error_of
from voice_call.runtime import Runtime


async def test_a_calls_language_is_kept_on_its_record(rpc: Rpc, vc_runtime: Runtime) -> None:
    reply = await rpc("voicecall.initiate", {"to": TO, "message": "您好", "language": "cmn-TW"})
    record = await vc_runtime.store.get(reply["result"]["callId"])
    assert record is not None and record.metadata["language"] == "zh-TW"


async def test_a_bad_language_is_refused_and_places_no_call(rpc: Rpc, vc_runtime: Runtime) -> None:
    for bad in ("not a tag!", "x", "zh-TW-", 7):
        reply = await rpc("voicecall.initiate", {"to": TO, "message": "Hi", "language": bad})
        assert error_of(reply) == (-32602, "invalid_request"), bad
        assert "language" in reply["error"]["message"], reply
    assert await vc_runtime.store.list_active() == []
