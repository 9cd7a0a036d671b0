"""The transition guard: an ended call never changes again (whoever asks), `call.ended` can only
carry a terminal reason, and an end without a reason has a defined one: completed for the
carrier's, hangup-bot for ours."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.manager.stack import Harness, harness
from tests.support import wait_until
from voice_call.errors import Conflict, Unavailable
from voice_call.manager.records import end_record, move, require_live
from voice_call.models import (
    LIVE_STATES,
    TERMINAL_STATES,
    CallEvent,
    CallRecord,
    CallState,
    Direction,
    EventType,
    Mode,
    can_transition,
)
from voice_call.providers.base import ProviderError, ProviderStatus

QUIET: dict[str, Any] = {"mock": {"silent": True}}
NON_TERMINAL = [s for s in CallState if s not in TERMINAL_STATES]


async def _answered(h: Harness) -> str:
    call = await h.manager.initiate(to=None, message="hi", mode=Mode.CONVERSATION)
    await h.advance(1.0)
    return call.call_id


def _record(state: CallState) -> CallRecord:
    return CallRecord(
        provider="mock",
        direction=Direction.OUTBOUND,
        mode=Mode.CONVERSATION,
        from_number="+15550000000",
        to_number="+15555550123",
        state=state,
        started_at=1.0,
    )


def test_the_terminal_and_live_states() -> None:
    assert {s.value for s in TERMINAL_STATES} == {
        "completed",
        "hangup-user",
        "hangup-bot",
        "timeout",
        "error",
        "failed",
        "no-answer",
        "busy",
        "voicemail",
    }
    assert {s.value for s in LIVE_STATES} == {"answered", "active", "speaking", "listening"}
    assert all(s.terminal and not s.live for s in TERMINAL_STATES)
    assert not CallState.RINGING.live and not CallState.RINGING.terminal
    assert CallState.LISTENING.live and not CallState.LISTENING.terminal


def test_the_forward_order() -> None:
    assert can_transition(CallState.INITIATED, CallState.RINGING)
    assert can_transition(CallState.RINGING, CallState.ACTIVE)
    assert can_transition(CallState.SPEAKING, CallState.LISTENING)
    assert can_transition(CallState.LISTENING, CallState.SPEAKING)
    assert not can_transition(CallState.ACTIVE, CallState.ANSWERED)
    assert not can_transition(CallState.ANSWERED, CallState.RINGING)
    assert not can_transition(CallState.RINGING, CallState.RINGING)
    for state in NON_TERMINAL:
        assert can_transition(state, CallState.BUSY)
    for ended in TERMINAL_STATES:
        assert not can_transition(ended, CallState.LISTENING)
        assert not can_transition(ended, CallState.COMPLETED)


def test_move_reports_what_it_did() -> None:
    rec = _record(CallState.ACTIVE)
    assert move(rec, CallState.ACTIVE) == "applied" and rec.state == CallState.ACTIVE
    assert move(rec, CallState.RINGING) == "ignored: active → ringing goes backwards"
    assert rec.state == CallState.ACTIVE
    assert move(rec, CallState.SPEAKING) == "applied" and rec.state == CallState.SPEAKING
    end_record(rec, CallState.BUSY, 42.0)
    assert (rec.state, rec.end_reason, rec.ended_at) == (CallState.BUSY, CallState.BUSY, 42.0)
    assert move(rec, CallState.LISTENING).startswith("ignored: busy → listening")
    assert rec.state == CallState.BUSY


def test_only_a_connected_call_is_live() -> None:
    require_live(_record(CallState.ANSWERED))
    with pytest.raises(Conflict, match="not connected yet"):
        require_live(_record(CallState.RINGING))
    ended = _record(CallState.ACTIVE)
    end_record(ended, CallState.HANGUP_USER, 1_700_000_000.0)
    with pytest.raises(Conflict, match=r"not active .*endReason=hangup-user.*2023-11-14"):
        require_live(ended)


@pytest.mark.parametrize("reason", NON_TERMINAL)
def test_call_ended_refuses_a_non_terminal_reason(reason: CallState) -> None:
    with pytest.raises(ValidationError, match="terminal state"):
        CallEvent(type=EventType.ENDED, call_id="c1", reason=reason)


def test_call_ended_takes_any_terminal_reason_or_none() -> None:
    for reason in TERMINAL_STATES:
        assert CallEvent(type=EventType.ENDED, reason=reason).reason == reason
    assert CallEvent(type=EventType.ENDED).reason is None


async def test_a_carrier_end_without_a_reason_completes_the_call(tmp_path: Path) -> None:
    async with harness(tmp_path, QUIET) as h:
        call_id = await _answered(h)
        ended = CallEvent(type=EventType.ENDED, call_id=call_id, timestamp=1_700_000_005.0)
        assert await h.manager.handle_event(ended) == "applied"
        rec = await h.store.get(call_id)
        assert rec is not None
        assert (rec.state, rec.end_reason) == (CallState.COMPLETED, CallState.COMPLETED)
        assert rec.ended_at == 1_700_000_005.0


async def test_our_end_without_a_reason_is_hangup_bot(tmp_path: Path) -> None:
    async with harness(tmp_path, QUIET) as h:
        call_id = await _answered(h)
        await h.manager.end(call_id)
        rec = await h.store.get(call_id)
        assert rec is not None
        assert (rec.state, rec.end_reason) == (CallState.HANGUP_BOT, CallState.HANGUP_BOT)
        assert rec.ended_at == h.clock.now()
        other = await _answered(h)
        await h.manager.end(other, CallState.TIMEOUT)
        rec = await h.store.get(other)
        assert rec is not None and rec.end_reason == CallState.TIMEOUT


async def test_an_ended_call_refuses_every_command_and_changes_nothing(tmp_path: Path) -> None:
    async with harness(tmp_path, QUIET) as h:
        call_id = await _answered(h)
        ended = CallEvent(type=EventType.ENDED, call_id=call_id, reason=CallState.HANGUP_USER)
        await h.manager.handle_event(ended)
        before = await h.store.get(call_id)
        seq = await h.store.last_seq()
        with pytest.raises(Conflict, match="not active"):
            await h.manager.speak(call_id, "too late")
        with pytest.raises(Conflict, match="not active"):
            await h.manager.send_dtmf(call_id, "1")
        with pytest.raises(Conflict, match="not active"):
            await h.manager.continue_call(call_id, "still there?")
        await h.manager.end(call_id)  # ending an ended call succeeds and changes nothing
        assert await h.store.last_seq() == seq
        assert await h.store.get(call_id) == before


async def test_carrier_events_after_the_end_change_nothing(tmp_path: Path) -> None:
    async with harness(tmp_path, QUIET) as h:
        call_id = await _answered(h)
        await h.manager.handle_event(
            CallEvent(type=EventType.ENDED, call_id=call_id, reason=CallState.BUSY)
        )
        before = await h.store.get(call_id)
        late = [
            CallEvent(type=EventType.SPEECH, call_id=call_id, transcript="hello?"),
            CallEvent(type=EventType.ENDED, call_id=call_id, reason=CallState.COMPLETED),
            CallEvent(type=EventType.ERROR, call_id=call_id, error="late"),
            CallEvent(type=EventType.ACTIVE, call_id=call_id, provider_call_id="other-id"),
        ]
        for event in late:
            assert await h.manager.handle_event(event) == "ignored: call already ended"
        assert await h.store.get(call_id) == before


async def test_a_failed_dial_is_recorded_failed_with_the_carriers_error(tmp_path: Path) -> None:
    async with harness(tmp_path, QUIET) as h:

        async def refuse(request: object) -> object:
            raise ProviderError("number unreachable")

        h.provider.initiate_call = refuse
        with pytest.raises(Unavailable, match="number unreachable"):
            await h.manager.initiate(to=None, message="hi")
        (rec,) = await h.store.list_recent()
        assert (rec.state, rec.end_reason) == (CallState.FAILED, CallState.FAILED)
        assert rec.metadata["error"] == "number unreachable"
        logged = (await h.store.events(call_id=rec.call_id))[-1]
        assert logged.type == "call.dial-failed"
        assert logged.data == {"reason": "failed", "error": "number unreachable"}


async def test_a_refused_hang_up_leaves_the_call_live(tmp_path: Path) -> None:
    async with harness(tmp_path, QUIET) as h:
        call_id = await _answered(h)

        async def refuse(record: object, reason: str) -> None:
            raise ProviderError("carrier down")

        h.provider.hangup = refuse
        with pytest.raises(Unavailable, match="refused to hang up"):
            await h.manager.end(call_id)
        rec = await h.store.get(call_id)
        assert rec is not None and not rec.terminal
        await h.manager.end(call_id, CallState.TIMEOUT)  # ours to decide: ended here anyway
        rec = await h.store.get(call_id)
        assert rec is not None and rec.end_reason == CallState.TIMEOUT


async def test_concurrent_ends_share_one_hang_up(tmp_path: Path) -> None:
    async with harness(tmp_path, QUIET) as h:
        call_id = await _answered(h)
        hangups: list[str] = []
        release = asyncio.Event()
        hangup = h.provider.hangup

        async def slow_hangup(record: CallRecord, reason: str) -> None:
            hangups.append(reason)
            await release.wait()
            await hangup(record, reason)

        h.provider.hangup = slow_hangup
        first = asyncio.create_task(h.manager.end(call_id))
        await wait_until(lambda: hangups, what="the first hang-up")
        second = asyncio.create_task(h.manager.end(call_id, CallState.TIMEOUT))
        await asyncio.sleep(0)
        release.set()
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        assert hangups == ["hangup-bot"]
        rec = await h.store.get(call_id)
        assert rec is not None and rec.end_reason == CallState.HANGUP_BOT


async def test_a_failed_end_leaves_no_unretrieved_error_behind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with harness(tmp_path, QUIET) as h:
        call_id = await _answered(h)

        async def refuse(record: object, reason: str) -> None:
            raise ProviderError("carrier down")

        h.provider.hangup = refuse
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            with pytest.raises(Unavailable):
                await h.manager.end(call_id)
            gc.collect()
            await asyncio.sleep(0)
        assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_answered_and_active_move_forward_only(tmp_path: Path) -> None:
    async with harness(tmp_path, {"mock": {"silent": True, "answerDelayMs": 10**9}}) as h:
        call = await h.manager.initiate(to=None, message="hi", mode=Mode.CONVERSATION)

        async def send(kind: EventType) -> str:
            return await h.manager.handle_event(CallEvent(type=kind, call_id=call.call_id))

        assert await send(EventType.RINGING) == "applied"
        assert await send(EventType.ANSWERED) == "applied"
        rec = await h.store.get(call.call_id)
        assert rec is not None and rec.state == CallState.ANSWERED
        assert rec.answered_at == h.clock.now()
        assert await send(EventType.ACTIVE) == "applied"
        rec = await h.store.get(call.call_id)
        assert rec is not None and rec.state == CallState.ACTIVE
        # The greeting may start meanwhile (a save lets other tasks run): from active on, an
        # earlier state goes backwards.
        for kind, target in ((EventType.ANSWERED, "answered"), (EventType.RINGING, "ringing")):
            backwards = {
                f"ignored: {now} → {target} goes backwards" for now in ("active", "speaking")
            }
            assert await send(kind) in backwards
        rec = await h.store.get(call.call_id)
        assert rec is not None and rec.state in (CallState.ACTIVE, CallState.SPEAKING)


async def test_the_carrier_speaking_marks_the_call_answered(tmp_path: Path) -> None:
    async with harness(tmp_path, {"mock": {"silent": True, "answerDelayMs": 10**9}}) as h:
        call = await h.manager.initiate(to=None, message="hi", mode=Mode.CONVERSATION)
        started: list[tuple[Any, ...]] = []
        h.manager.replies.audio_started = lambda *args: started.append(args)
        speaking = CallEvent(
            type=EventType.SPEAKING, call_id=call.call_id, tts_first_byte_ms=12.5, timestamp=7.0
        )
        assert await h.manager.handle_event(speaking) == "applied"
        rec = await h.store.get(call.call_id)
        assert rec is not None and rec.state == CallState.SPEAKING and rec.answered_at == 7.0
        ((call_id, received, first_byte),) = started
        assert (call_id, first_byte) == (call.call_id, 12.5) and isinstance(received, float)


async def test_a_carrier_error_ends_the_call_with_its_reason(tmp_path: Path) -> None:
    async with harness(tmp_path, QUIET) as h:
        first, second = await _answered(h), await _answered(h)
        await h.manager.handle_event(CallEvent(type=EventType.ERROR, call_id=first))
        await h.manager.handle_event(CallEvent(type=EventType.ERROR, call_id=second, error="boom"))
        for call_id, error in ((first, "carrier error"), (second, "boom")):
            rec = await h.store.get(call_id)
            assert rec is not None and rec.metadata["error"] == error
            assert (rec.state, rec.end_reason) == (CallState.ERROR, CallState.ERROR)
            assert rec.ended_at == h.clock.now()


async def test_a_carrier_end_or_error_finalizes_the_call(tmp_path: Path) -> None:
    async with harness(tmp_path, QUIET) as h:
        told: list[str] = []
        h.manager.end_listeners.append(told.append)
        ended, failed = await _answered(h), await _answered(h)
        waiting = asyncio.create_task(h.manager.continue_call(ended, "are you there?"))
        await wait_until(lambda: ended in h.manager._turns, what="the turn to wait")
        event = CallEvent(type=EventType.ENDED, call_id=ended, reason=CallState.HANGUP_USER)
        assert await h.manager.handle_event(event) == "applied"
        with pytest.raises(Conflict, match="Call ended: hangup-user"):
            await asyncio.wait_for(waiting, 5)
        error = CallEvent(type=EventType.ERROR, call_id=failed, error="boom")
        assert await h.manager.handle_event(error) == "applied"
        assert told == [ended, failed]


async def test_our_end_never_overwrites_the_carriers(tmp_path: Path) -> None:
    async with harness(tmp_path, QUIET) as h:
        call_id = await _answered(h)
        hangup = h.provider.hangup

        async def carrier_ends_first(record: CallRecord, reason: str) -> None:
            event = CallEvent(type=EventType.ENDED, call_id=call_id, reason=CallState.HANGUP_USER)
            await h.manager.handle_event(event)
            await hangup(record, reason)

        h.provider.hangup = carrier_ends_first
        await h.manager.end(call_id)
        rec = await h.store.get(call_id)
        assert rec is not None and rec.end_reason == CallState.HANGUP_USER
        assert "error" not in rec.metadata


async def test_a_failed_dial_never_overwrites_the_carriers_end(tmp_path: Path) -> None:
    async with harness(tmp_path, QUIET) as h:

        async def busy_then_refuse(request: Any) -> object:
            event = CallEvent(type=EventType.ENDED, call_id=request.call_id, reason=CallState.BUSY)
            await h.manager.handle_event(event)
            raise ProviderError("line busy")

        h.provider.initiate_call = busy_then_refuse
        with pytest.raises(Unavailable, match="line busy"):
            await h.manager.initiate(to=None, message="hi")
        (rec,) = await h.store.list_recent()
        assert rec.end_reason == CallState.BUSY and "error" not in rec.metadata


async def test_the_end_of_playback_after_a_goodbye_hangs_up(tmp_path: Path) -> None:
    async with harness(tmp_path, QUIET) as h:
        call_id = await _answered(h)
        rec = await h.store.get(call_id)
        assert rec is not None
        rec.metadata["hangupAfterReply"] = True  # the responder said goodbye
        await h.store.save(rec)
        playback = CallEvent(type=EventType.PLAYBACK_ENDED, call_id=call_id)
        assert await h.manager.handle_event(playback) == "applied"
        await h.advance(h.config.outbound.notify_hangup_delay_sec + 0.1)
        rec = await h.store.get(call_id)
        assert rec is not None and rec.end_reason == CallState.HANGUP_BOT


async def test_only_the_end_of_playback_counts_as_the_notify_message_heard(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path) as h:
        h.provider.reports_playback_end = True
        speak = h.provider.speak

        async def speak_and_press(call: CallRecord, text: str) -> None:
            await speak(call, text)
            digits = CallEvent(type=EventType.DTMF, call_id=call.call_id, digits="1")
            await h.manager.handle_event(digits)  # not the end of playback

        h.provider.speak = speak_and_press
        call = await h.manager.initiate(to=None, message="A short note", mode=Mode.NOTIFY)
        await h.advance(1.0)
        await h.advance(h.config.outbound.notify_hangup_delay_sec + 0.1)
        rec = await h.store.get(call.call_id)
        assert rec is not None and not rec.terminal  # waits for the end of playback


async def test_a_restore_never_revives_a_call_that_ended_while_the_carrier_was_asked(
    tmp_path: Path,
) -> None:
    # Restore (after a restart, or a takeover in a cluster) asks the carrier about a call
    # read before; the carrier's own "ended" applied meanwhile must not be written over.
    async with harness(tmp_path, QUIET) as h:
        call_id = await _answered(h)
        before = await h.store.get(call_id)
        assert before is not None
        status = h.provider.get_call_status

        async def ends_while_asked(provider_call_id: str) -> ProviderStatus:
            answer = await status(provider_call_id)  # still live when asked
            event = CallEvent(type=EventType.ENDED, call_id=call_id, reason=CallState.HANGUP_USER)
            assert await h.manager.handle_event(event) == "applied"
            return answer

        h.provider.get_call_status = ends_while_asked
        await h.manager._restore(before)
        rec = await h.store.get(call_id)
        assert rec is not None and rec.end_reason == CallState.HANGUP_USER and rec.terminal
