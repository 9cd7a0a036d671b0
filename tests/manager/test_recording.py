"""Recording on the mock carrier (offline): `recording.enabled` and the per-call `record`, the
consent line, the file on the record; and the `record` param on the RPC and tool faces."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import pytest

from tests.manager.stack import harness
from tests.server.stack import Rpc
from tests.support import wait_until
from voice_call.agent.tool import run_tool
from voice_call.config import ConfigError, parse_config
from voice_call.models import CallRecord, EventType, Mode

CONSENT = "This call is recorded for quality."


async def _ended(h: Any, call_id: str) -> CallRecord:
    await h.advance(1.5)  # answered, greeted, the callee replied
    await h.manager.end(call_id)
    await h.advance(0.1)
    record = await h.manager.get(call_id)
    assert record is not None and record.terminal
    return record


async def test_a_recorded_call_has_its_file_on_the_record(tmp_path: Path) -> None:
    overrides = {"recording": {"enabled": True, "channels": "mono", "announce": CONSENT}}
    async with harness(tmp_path, overrides) as h:
        call = await h.manager.initiate(to=None, message="Hi there", mode=Mode.CONVERSATION)
        record = await _ended(h, call.call_id)
        found = record.metadata["recording"]
        assert found["status"] == "completed" and found["durationS"] >= 1
        path = Path(found["path"])
        assert path.parent == tmp_path / "recordings"
        with wave.open(str(path), "rb") as wav:
            assert wav.getnchannels() == 1 and wav.getnframes() >= 8000
        assert [e["op"] for e in h.ledger()][:2] == ["dial", "record"]
        assert record.transcript[0].text == f"{CONSENT} Hi there"  # the notice comes first
        events = await h.store.events(call_id=call.call_id)
        assert EventType.RECORDING in [e.type for e in events]  # logged after the end


@pytest.mark.parametrize(("enabled", "record_call"), [(False, None), (True, False)])
async def test_no_recording_unless_asked(
    tmp_path: Path, enabled: bool, record_call: bool | None
) -> None:
    overrides = {"recording": {"enabled": enabled, "announce": CONSENT}}
    async with harness(tmp_path, overrides) as h:
        call = await h.manager.initiate(
            to=None, message="Hi there", mode=Mode.CONVERSATION, record_call=record_call
        )
        record = await _ended(h, call.call_id)
    assert "recording" not in record.metadata
    assert "record" not in [e["op"] for e in h.ledger()]
    assert record.transcript[0].text == "Hi there"  # no consent line for an unrecorded call


async def test_record_true_on_the_call_records_without_the_config(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        call = await h.manager.initiate(
            to=None, message="Hi there", mode=Mode.CONVERSATION, record_call=True
        )
        record = await _ended(h, call.call_id)
    assert record.metadata["record"] is True and record.metadata["recording"]["path"]


@pytest.mark.parametrize(
    ("recording", "where"),
    [
        ({"channels": "stereo"}, "recording.channels"),
        ({"download": "sometimes"}, "recording.download"),
        ({"enabled": True, "format": "mp3"}, "recording.format"),
    ],
)
def test_bad_recording_config_is_refused(recording: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"recording": recording}, env={})
    assert where in str(caught.value)


async def test_rpc_record_must_be_a_boolean(rpc: Rpc) -> None:
    reply = await rpc("voicecall.initiate", {"message": "hi", "record": "yes"})
    assert reply["error"]["data"]["code"] == "invalid_request"
    assert "record" in reply["error"]["message"]


async def test_rpc_record_lands_on_the_call(rpc: Rpc, vc_runtime: Any) -> None:
    reply = await rpc("voicecall.initiate", {"message": "hi", "to": "+15555550123", "record": True})
    call_id = reply["result"]["callId"]

    async def recorded() -> bool:
        record = await vc_runtime.store.get(call_id)
        return record is not None and record.metadata.get("record") is True

    await wait_until(recorded)


class _Client:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((method, params))
        return {"callId": "c1", "initiated": True}


async def test_the_tool_passes_record_and_refuses_a_string() -> None:
    client = _Client()
    ok = await run_tool({"action": "initiate_call", "message": "hi", "record": True}, client)
    assert ok == {"callId": "c1", "initiated": True}
    assert client.calls == [("voicecall.initiate", {"message": "hi", "record": True})]
    bad = await run_tool({"action": "initiate_call", "message": "hi", "record": "yes"}, client)
    assert bad == {"error": "record must be true or false"}


@pytest.mark.parametrize(
    ("flag", "sent"), [([], None), (["--record"], True), (["--no-record"], False)]
)
def test_the_cli_sends_record_only_when_given(
    monkeypatch: pytest.MonkeyPatch, flag: list[str], sent: bool | None
) -> None:
    from click.testing import CliRunner

    import voice_call.cli.call as cli_call
    from voice_call.cli.main import cli as voicecall

    seen: list[dict[str, Any]] = []

    def fake_rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
        seen.append(params)
        return {"callId": "c1", "initiated": True}

    monkeypatch.setattr(cli_call, "rpc", fake_rpc)
    result = CliRunner().invoke(
        voicecall, ["call", "-m", "hi", *flag], env={"VOICECALL_CONFIG": ""}
    )
    assert result.exit_code == 0, result.output
    assert seen == [{"message": "hi", **({} if sent is None else {"record": sent})}]
