"""Runtime assembly: idempotent start/stop, the RPC token file, retention of ended calls."""

from __future__ import annotations

import stat
from pathlib import Path

from voice_call.clock import FakeClock
from voice_call.config import parse_config
from voice_call.models import CallRecord, CallState, Direction, Mode
from voice_call.runtime import Runtime


def _ended(call_id: str, ended_at: float) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        provider="mock",
        provider_call_id=f"mock-{call_id}",
        direction=Direction.OUTBOUND,
        mode=Mode.NOTIFY,
        from_number="+15550000000",
        to_number="+15555550123",
        state=CallState.COMPLETED,
        end_reason=CallState.COMPLETED,
        started_at=ended_at - 10,
        ended_at=ended_at,
    )


async def test_start_twice_is_harmless_and_token_is_private(tmp_path: Path) -> None:
    runtime = Runtime(parse_config({}, env={}), tmp_path, clock=FakeClock())
    await runtime.start()
    token = runtime.rpc_token
    await runtime.start()
    assert runtime.running and runtime.rpc_token == token and len(token) >= 32
    mode = stat.S_IMODE((tmp_path / "rpc-token").stat().st_mode)
    assert mode == 0o600
    await runtime.stop()
    await runtime.stop()
    again = Runtime(parse_config({}, env={}), tmp_path, clock=FakeClock())
    await again.start()
    assert again.rpc_token == token  # the CLI keeps working across restarts
    await again.stop()


async def test_retention_prunes_old_ended_calls(tmp_path: Path) -> None:
    clock = FakeClock()
    runtime = Runtime(parse_config({"store": {"retentionDays": 7}}, env={}), tmp_path, clock=clock)
    await runtime.store.open()
    await runtime.store.save(_ended("old", clock.now() - 8 * 86_400))
    await runtime.store.save(_ended("recent", clock.now() - 6 * 86_400))
    await runtime.start()
    await clock.advance(0)
    assert await runtime.store.get("old") is None
    assert await runtime.store.get("recent") is not None
    await clock.advance(2 * 86_400)  # hourly pruning catches up with the recent one
    assert await runtime.store.get("recent") is None
    await runtime.stop()
