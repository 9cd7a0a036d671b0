"""Chaos, CI size: kill -9 a busy `voicecall serve` 3 times with 10 calls live, lose nothing.

The full run (50 calls live, 20 kills) is `python -m bench chaos` (bench/chaos.py says what
is checked; bench/README.md has its recorded result). The checker itself is tested too: a
webhook answered 2xx whose event is not in the store, a call dialed twice, and a call ended in
the store but live at the carrier must each be reported.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qsl

from bench.chaos import Chaos, kind_of, number, run_chaos
from bench.twilio_bench import Dialed, status_callback

from voice_call.models import CallRecord, CallState, Direction, Mode
from voice_call.security.signatures.twilio import HEADER
from voice_call.sim.callee import CalleeScript, SimulatedCallee
from voice_call.sim.common import EmulatedCall, SentWebhook
from voice_call.sim.twilio.rest import CreateCall
from voice_call.store.sqlite import SqliteStore


async def test_three_kills_with_ten_calls_live_lose_nothing(tmp_path: Path) -> None:
    result = await run_chaos(calls=10, kills=3, seed=7, scale=0.2, workdir=tmp_path)
    assert result.problems == []
    assert result.kills == 3 and result.restarts == 3
    assert result.placed >= 10 and result.dialed >= result.placed  # cut-off dials may count
    assert result.delivered > 0 and result.events_checked > 0
    assert result.restored > 0  # each start reconciled the calls it found live
    assert result.states and all(n > 0 for n in result.states.values())


def test_numbers_carry_their_kind() -> None:
    for kind in ("echo", "notify", "busy", "no-answer", "failed", "silent"):
        assert kind_of(number(kind, 123)) == kind


def _record(call_id: str, sid: str, state: CallState) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        provider="twilio",
        provider_call_id=sid,
        direction=Direction.OUTBOUND,
        mode=Mode.CONVERSATION,
        from_number="+15550001000",
        to_number="+15550002000",
        state=state,
        started_at=1.0,
    )


def _emulated(sid: str, ended: bool, answered: bool) -> EmulatedCall:
    call = EmulatedCall(sid, "outbound", "+1", "+2", SimulatedCallee(CalleeScript()))
    call.answered_at = 2.0 if answered else None
    if ended:
        call.ended.set()
    return call


async def test_the_checks_can_fail(tmp_path: Path) -> None:
    chaos = Chaos(10, 0, 1, 0.2, tmp_path / "home", budget=0)
    emu = chaos.emu
    emu.calls["CA1"] = _emulated("CA1", ended=False, answered=True)
    emu.calls["CA2"] = _emulated("CA2", ended=True, answered=True)
    emu.calls["CA3"] = _emulated("CA3", ended=False, answered=False)
    records = [
        _record("c1", "CA1", CallState.COMPLETED),  # ended here, live there
        _record("c2", "CA2", CallState.ACTIVE),  # live here, ended there
        _record("c3", "CA3", CallState.ANSWERED),  # answered here, ringing there
    ]
    assert [p.split()[0] for p in chaos._disagreements(records)] == ["c1", "c2", "c3"]
    assert chaos._disagreements([_record("c1", "CA1", CallState.ACTIVE)]) == []

    # a status callback answered 2xx whose event is not in the (empty) store
    store = SqliteStore(tmp_path / "home" / "calls.db")
    await store.open()
    await store.close()
    url = f"http://127.0.0.1:{chaos.port}/voice/webhook?type=status&callId=c1"
    signature, body = status_callback(url, "CA1", "ringing", 3)
    params = dict(parse_qsl(body.decode()))
    emu.webhooks.append(SentWebhook(url, params, {HEADER: signature}, status_code=200))
    chaos._check_events()
    assert len(chaos.result.problems) == 1 and "not stored" in chaos.result.problems[0]

    # one call id dialed twice (and with no record)
    request = CreateCall(to="+15550002000", from_="+15550001000", status_callback=url)
    emu.dialed += [
        Dialed("CA1", "c1", request.to, request),
        Dialed("CA9", "c1", request.to, request),
    ]
    for call in emu.calls.values():
        call.ended.set()
    await asyncio.wait_for(chaos._settle(), 60)
    assert any("more than once" in p for p in chaos.result.problems)
    assert any("without a record" in p for p in chaos.result.problems)
