"""The mock carrier honours the call settings every carrier does: ringTimeoutMs ends a call
nobody answers in time as `no-answer`, and a notify call hangs up notifyHangupDelaySec after
its message (as on the emulated carriers, tests/providers/test_notify_hangup_delay.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.manager.stack import harness
from voice_call.models import CallState, Mode
from voice_call.providers.base import ProviderError


@pytest.mark.parametrize(
    "mock",
    [
        {"answerDelayMs": 5000},  # would answer, but only after the ring timeout
        {"outcome": "no-answer", "answerDelayMs": 300},  # never answers
        {"outcome": "voicemail", "answerDelayMs": 5000},  # the machine picks up too late
    ],
)
async def test_an_unanswered_mock_call_ends_no_answer_at_the_ring_timeout(
    tmp_path: Path, mock: dict[str, object]
) -> None:
    async with harness(tmp_path, {"ringTimeoutMs": 2000, "mock": mock}) as h:
        call = await h.manager.initiate(to=None, message="Hello", mode=Mode.CONVERSATION)
        await h.advance(1.9)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and not rec.terminal  # still ringing
        await h.advance(0.2)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == CallState.NO_ANSWER
        assert rec.answered_at is None
        assert [e["op"] for e in h.ledger()] == ["dial", "ended"]
        assert h.ledger()[-1]["reason"] == "no-answer"


async def test_a_mock_call_answered_within_the_ring_timeout_is_answered(tmp_path: Path) -> None:
    async with harness(tmp_path, {"ringTimeoutMs": 2000, "mock": {"answerDelayMs": 1500}}) as h:
        call = await h.manager.initiate(to=None, message="Hello", mode=Mode.CONVERSATION)
        await h.advance(1.6)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.answered_at is not None and not rec.terminal


@pytest.mark.parametrize("delay", [0, 1])
async def test_a_mock_notify_call_hangs_up_the_delay_after_its_message(
    tmp_path: Path, delay: int
) -> None:
    overrides = {"outbound": {"notifyHangupDelaySec": delay}, "mock": {"answerDelayMs": 100}}
    async with harness(tmp_path, overrides) as h:
        call = await h.manager.initiate(to=None, message="Your table is ready", mode=Mode.NOTIFY)
        await h.advance(0.1)  # answered: the message is said at once
        callee = h.provider.callees[f"mock-{call.call_id}"]
        assert callee.heard == ["Your table is ready"]
        said_at = h.clock.now()
        if delay:
            await h.advance(delay - 0.05)
            rec = await h.manager.get(call.call_id)
            assert rec is not None and not rec.terminal  # not before the delay
        await h.advance(0.1)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == CallState.HANGUP_BOT
        assert rec.ended_at is not None and delay <= rec.ended_at - said_at < delay + 0.2
        assert [e["op"] for e in h.ledger()] == ["dial", "hangup"]


async def test_a_dtmf_sequence_is_pressed_on_answer_before_the_greeting(tmp_path: Path) -> None:
    async with harness(tmp_path, {"mock": {"answerDelayMs": 100}}) as h:
        call = await h.manager.initiate(
            to=None, message="Hello room", mode=Mode.CONVERSATION, dtmf_sequence="ww1234#"
        )
        callee = h.provider.callees[f"mock-{call.call_id}"]
        assert callee.digits == []  # not before the answer
        await h.advance(0.1)
        assert callee.digits == ["ww1234#"] and callee.heard == ["Hello room"]
        kinds = [(e.type, e.data) for e in await h.store.events(call_id=call.call_id)]
        pressed = kinds.index(("bot.dtmf", {"digits": "ww1234#"}))
        assert pressed < [k for k, _ in kinds].index("bot.speaking")  # keys, then the greeting


async def test_a_refused_dtmf_sequence_is_logged_and_the_call_goes_on(tmp_path: Path) -> None:
    async with harness(tmp_path, {"mock": {"answerDelayMs": 100}}) as h:

        async def refuse(call: object, digits: str) -> None:
            raise ProviderError("no keys today")

        h.provider.send_dtmf = refuse
        call = await h.manager.initiate(
            to=None, message="Hello room", mode=Mode.CONVERSATION, dtmf_sequence="1#"
        )
        await h.advance(0.1)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == CallState.LISTENING  # greeted anyway
        events = [(e.type, e.data) for e in await h.store.events(call_id=call.call_id)]
        assert ("bot.dtmf-failed", {"error": "no keys today"}) in events
        assert "bot.dtmf" not in [kind for kind, _ in events]
