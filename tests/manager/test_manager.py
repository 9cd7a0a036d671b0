"""CallManager on the mock provider: lifecycle, turns, timers, inbound, dedupe, restore."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.manager.stack import harness
from voice_call.agent.responders.echo import EchoResponder
from voice_call.errors import Conflict, InvalidInput, NotFound, TimedOut, Unavailable
from voice_call.models import CallEvent, CallRecord, CallState, Direction, EventType, Mode, Speaker


async def test_notify_call_says_message_then_hangs_up_after_delay(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        call = await h.manager.initiate(to=None, message="Your table is ready", mode=Mode.NOTIFY)
        assert call.to_number == "+15555550123"
        assert call.provider_call_id == f"mock-{call.call_id}"
        await h.advance(1.0)  # answered
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.answered_at is not None
        assert [e.text for e in rec.transcript] == ["Your table is ready"]
        assert "initialMessage" not in rec.metadata
        await h.advance(2.9)
        assert not (await h.manager.get(call.call_id)).terminal  # type: ignore[union-attr]
        await h.advance(0.2)  # notifyHangupDelaySec = 3
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == CallState.HANGUP_BOT
        assert [e["op"] for e in h.ledger()] == ["dial", "hangup"]


async def test_conversation_greets_then_listens_and_records_reply(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        call = await h.manager.initiate(
            to="+15555550199", message="Hi there", mode=Mode.CONVERSATION
        )
        await h.advance(1.0)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == CallState.LISTENING
        await h.advance(0.5)
        rec = await h.manager.get(call.call_id)
        assert rec is not None
        assert [(e.speaker, e.text) for e in rec.transcript] == [
            (Speaker.BOT, "Hi there"),
            (Speaker.USER, "first reply"),
        ]


async def test_continue_speaks_waits_and_records_latency(tmp_path: Path) -> None:
    async with harness(tmp_path, {"mock": {"replies": ["greeting reply", "the answer"]}}) as h:
        call = await h.manager.initiate(to=None, message="Hello", mode=Mode.CONVERSATION)
        await h.advance(1.5)
        task = asyncio.ensure_future(h.manager.continue_call(call.call_id, "What is it?"))
        await h.advance(0.1)
        with pytest.raises(Conflict, match="Already waiting"):
            await h.manager.continue_call(call.call_id, "again?")
        await h.advance(0.5)
        assert await task == "the answer"
        rec = await h.manager.get(call.call_id)
        assert rec is not None
        assert len(rec.latency) == 1 and rec.latency[0].turn == 1
        assert rec.metadata["turnCount"] == 1
        assert rec.transcript[-2].text == "What is it?" and rec.transcript[-1].text == "the answer"


async def test_continue_times_out_without_reply(tmp_path: Path) -> None:
    async with harness(tmp_path, {"mock": {"silent": True}, "transcriptTimeoutMs": 5000}) as h:
        call = await h.manager.initiate(to=None, message="Hello", mode=Mode.CONVERSATION)
        await h.advance(1.0)
        task = asyncio.ensure_future(h.manager.continue_call(call.call_id, "Anyone?"))
        await h.advance(4.9)
        assert not task.done()
        await h.advance(0.2)
        with pytest.raises(TimedOut, match="5000 ms"):
            await task
        # a timed-out turn frees the call for the next one
        task2 = asyncio.ensure_future(h.manager.continue_call(call.call_id, "Still there?"))
        await h.advance(0.1)
        assert not task2.done()
        await h.manager.end(call.call_id)
        with pytest.raises(Conflict, match="Call ended"):
            await task2


async def test_stale_turn_token_does_not_answer_current_turn(tmp_path: Path) -> None:
    async with harness(tmp_path, {"mock": {"silent": True}}) as h:
        call = await h.manager.initiate(to=None, message="Hello", mode=Mode.CONVERSATION)
        await h.advance(1.0)
        task = asyncio.ensure_future(h.manager.continue_call(call.call_id, "Question"))
        await h.advance(0.1)
        stale = CallEvent(
            type=EventType.SPEECH, call_id=call.call_id, transcript="old answer", turn_token="nope"
        )
        assert await h.manager.handle_event(stale) == "applied: stale turn token"
        assert not task.done()
        fresh = CallEvent(type=EventType.SPEECH, call_id=call.call_id, transcript="new answer")
        await h.manager.handle_event(fresh)
        await h.advance(0)
        assert await task == "new answer"


async def test_input_errors(tmp_path: Path) -> None:
    async with harness(tmp_path, {"toNumber": None}) as h:
        with pytest.raises(InvalidInput, match=r"E\.164"):
            await h.manager.initiate(to="555-1234", message="hi")
        with pytest.raises(InvalidInput, match="to is required"):
            await h.manager.initiate(to=None, message="hi")
        with pytest.raises(InvalidInput, match="message is required"):
            await h.manager.initiate(to="+15555550123", message="  ")
        with pytest.raises(NotFound):
            await h.manager.speak("no-such-call", "hello")
        with pytest.raises(NotFound):
            await h.manager.end("no-such-call")
        assert await h.store.list_active() == []
        assert h.ledger() == []  # nothing was dialed


async def test_speak_before_answer_and_after_end_is_refused(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        call = await h.manager.initiate(to=None, message="hi", mode=Mode.CONVERSATION)
        with pytest.raises(Conflict, match="not connected yet"):
            await h.manager.speak(call.call_id, "too early")
        await h.advance(1.0)
        await h.manager.end(call.call_id)
        await h.manager.end(call.call_id)  # ending an ended call succeeds
        with pytest.raises(Conflict, match=r"not active \(last state=hangup-bot"):
            await h.manager.speak(call.call_id, "too late")
        with pytest.raises(InvalidInput):
            await h.manager.send_dtmf(call.call_id, "12x")


async def test_dtmf_reaches_the_callee(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        call = await h.manager.initiate(to=None, message="hi", mode=Mode.CONVERSATION)
        await h.advance(1.0)
        await h.manager.send_dtmf(call.call_id, "1234#")
        assert h.provider.callees[call.provider_call_id].digits == ["1234#"]
        events = await h.store.events(call_id=call.call_id)
        assert any(e.type == "bot.dtmf" and e.data == {"digits": "1234#"} for e in events)


async def test_max_concurrent_calls(tmp_path: Path) -> None:
    async with harness(tmp_path, {"maxConcurrentCalls": 2}) as h:
        results = await asyncio.gather(
            *(h.manager.initiate(to=None, message="hi") for _ in range(4)),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, Unavailable)]
        assert len(refused) == 2 and "Maximum concurrent calls (2)" in str(refused[0])
        assert len(await h.store.list_active()) == 2


async def test_max_duration_ends_call_from_answer(tmp_path: Path) -> None:
    async with harness(tmp_path, {"maxDurationSeconds": 60}) as h:
        call = await h.manager.initiate(to=None, message="hi", mode=Mode.CONVERSATION)
        await h.advance(1.0)
        await h.advance(59.5)
        assert not (await h.manager.get(call.call_id)).terminal  # type: ignore[union-attr]
        await h.advance(1.0)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == CallState.TIMEOUT


async def test_reaper_ends_unanswered_but_never_live_calls(tmp_path: Path) -> None:
    overrides = {
        "staleCallReaperSeconds": 60,
        "ringTimeoutMs": 20_000_000,  # rings on: no no-answer before the reaper looks
        "mock": {"answerDelayMs": 10_000_000},
    }
    async with harness(tmp_path, overrides) as h:
        stale = await h.manager.initiate(to=None, message="hi", mode=Mode.CONVERSATION)
        # a live inbound call that never sent 'answered' but is talking (seed issue #79121)
        await h.manager.handle_event(
            CallEvent(
                type=EventType.INITIATED,
                provider_call_id="in-1",
                direction=Direction.INBOUND,
                **{"from": "+15555550100", "to": "+15555550111"},
            )
        )
        await h.advance(121)
        assert (await h.manager.get(stale.call_id)).state == CallState.TIMEOUT  # type: ignore[union-attr]
        assert [c.provider_call_id for c in await h.store.list_active()] == []  # inbound refused


async def test_reaper_spares_a_listening_call(tmp_path: Path) -> None:
    overrides = {"staleCallReaperSeconds": 30, "inboundPolicy": "open", "mock": {"silent": True}}
    async with harness(tmp_path, overrides) as h:
        await h.manager.handle_event(
            CallEvent(
                type=EventType.INITIATED,
                provider_call_id="in-2",
                direction=Direction.INBOUND,
                **{"from": "+15555550100", "to": "+15555550111"},
            )
        )
        [call] = await h.store.list_active()
        # force a listening state without answered_at, as an odd carrier could leave it
        listening = call.model_copy(update={"state": CallState.LISTENING})
        await h.store.save(listening)
        await h.advance(200)
        assert (await h.manager.get(call.call_id)).state == CallState.LISTENING  # type: ignore[union-attr]


async def test_inbound_policies(tmp_path: Path) -> None:
    overrides = {
        "inboundPolicy": "allowlist",
        "allowFrom": ["+15555550100"],
        "inboundGreeting": "Welcome!",
        "numbers": {"+15555550111": {"inboundGreeting": "Sales line, hello!"}},
    }
    async with harness(tmp_path, overrides) as h:

        def inbound(pid: str, caller: str, to: str = "+15555550999") -> CallEvent:
            return CallEvent(
                type=EventType.INITIATED,
                provider_call_id=pid,
                direction=Direction.INBOUND,
                **{"from": caller, "to": to},
            )

        assert (await h.manager.handle_event(inbound("a", "+15555550777"))).startswith("rejected")
        assert await h.manager.handle_event(inbound("b", "+1 (555) 555-0100")) == "accepted"
        assert (
            await h.manager.handle_event(inbound("c", "+15555550100", "+15555550111")) == "accepted"
        )
        rejected = await h.store.find_by_provider_call_id("mock", "a")
        assert rejected is not None and rejected.state == CallState.HANGUP_BOT
        assert rejected.metadata["rejectionReason"] == "inbound-policy"
        b = await h.store.find_by_provider_call_id("mock", "b")
        c = await h.store.find_by_provider_call_id("mock", "c")
        assert b is not None and b.metadata["initialMessage"] == "Welcome!"
        assert c is not None and c.metadata["initialMessage"] == "Sales line, hello!"
        await h.manager.handle_event(CallEvent(type=EventType.ANSWERED, provider_call_id="c"))
        await h.advance(0)
        c = await h.store.get(c.call_id)
        assert c is not None and c.transcript[0].text == "Sales line, hello!"


async def test_inbound_disabled_by_default(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        event = CallEvent(
            type=EventType.INITIATED,
            provider_call_id="x",
            direction=Direction.INBOUND,
            **{"from": "+15555550100"},
        )
        assert "disabled" in await h.manager.handle_event(event)
        assert await h.store.list_active() == []


async def test_repeated_event_changes_nothing(tmp_path: Path) -> None:
    async with harness(tmp_path, {"mock": {"silent": True}}) as h:
        call = await h.manager.initiate(to=None, message="hi", mode=Mode.CONVERSATION)
        await h.advance(1.0)
        speech = CallEvent(
            type=EventType.SPEECH, call_id=call.call_id, transcript="yes", dedupe_key="carrier-1"
        )
        assert await h.manager.handle_event(speech) == "applied"
        before = await h.store.get(call.call_id)
        seq = await h.store.last_seq()
        assert await h.manager.handle_event(speech) == "duplicate"
        assert await h.store.last_seq() == seq
        assert await h.store.get(call.call_id) == before
        # a fresh manager (empty memory) still refuses it: the key is durable
        h.manager._recent_keys.clear()
        assert await h.manager.handle_event(speech) == "duplicate"


async def test_backwards_and_post_terminal_events_are_logged_and_ignored(tmp_path: Path) -> None:
    async with harness(tmp_path, {"mock": {"silent": True}}) as h:
        call = await h.manager.initiate(to=None, message="hi", mode=Mode.CONVERSATION)
        await h.advance(1.0)
        outcome = await h.manager.handle_event(
            CallEvent(type=EventType.RINGING, call_id=call.call_id)
        )
        assert outcome.startswith("ignored") and "backwards" in outcome
        await h.manager.handle_event(
            CallEvent(type=EventType.ENDED, call_id=call.call_id, reason=CallState.HANGUP_USER)
        )
        outcome = await h.manager.handle_event(
            CallEvent(type=EventType.ANSWERED, call_id=call.call_id)
        )
        assert outcome == "ignored: call already ended"
        rec = await h.store.get(call.call_id)
        assert rec is not None and rec.state == CallState.HANGUP_USER
        logged = await h.store.events(call_id=call.call_id)
        types = [e.type for e in logged]
        # after the end: logged, but as `call.ignored` naming the event (never a live-looking one)
        assert types.count("call.ringing") == 2 and types[-1] == "call.ignored"
        assert logged[-1].data["event"] == "call.answered"


async def test_unknown_call_event_does_not_burn_its_key(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        event = CallEvent(type=EventType.ANSWERED, provider_call_id="later", dedupe_key="k1")
        assert await h.manager.handle_event(event) == "unknown-call"
        assert not await h.store.seen("k1")


async def test_busy_and_no_answer_outcomes(tmp_path: Path) -> None:
    for outcome, state in (("busy", CallState.BUSY), ("no-answer", CallState.NO_ANSWER)):
        overrides = {"mock": {"outcome": outcome}, "ringTimeoutMs": 1000}  # no-answer: rings 1 s
        async with harness(tmp_path / outcome, overrides) as h:
            call = await h.manager.initiate(to=None, message="hi")
            await h.advance(1.0)
            rec = await h.manager.get(call.call_id)
            assert rec is not None and rec.state == state and rec.end_reason == state


async def test_echo_auto_response_runs_three_turns_then_callee_hangs_up(tmp_path: Path) -> None:
    overrides = {"mock": {"hangupAfterTurns": 3}}
    async with harness(tmp_path, overrides, responder=EchoResponder()) as h:
        call = await h.manager.initiate(to=None, message="Hello!", mode=Mode.CONVERSATION)
        for _ in range(12):
            await h.advance(0.5)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == CallState.HANGUP_USER
        assert [e.text for e in rec.transcript] == [
            "Hello!",
            "first reply",
            "You said: first reply",
            "second reply",
            "You said: second reply",
            "third reply",
            "You said: third reply",
        ]


async def test_notify_calls_do_not_auto_respond(tmp_path: Path) -> None:
    async with harness(tmp_path, {}, responder=EchoResponder()) as h:
        call = await h.manager.initiate(to=None, message="Reminder", mode=Mode.NOTIFY)
        await h.advance(1.0)
        await h.manager.handle_event(
            CallEvent(type=EventType.SPEECH, call_id=call.call_id, transcript="ok")
        )
        await h.advance(0.1)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and [e.speaker for e in rec.transcript] == [
            Speaker.BOT,
            Speaker.USER,
        ]


async def test_restore_reconciles_without_redialing(tmp_path: Path) -> None:
    overrides = {"maxDurationSeconds": 100, "mock": {"silent": True}}
    async with harness(tmp_path, overrides) as h:
        live = await h.manager.initiate(to=None, message="one", mode=Mode.CONVERSATION)
        old = await h.manager.initiate(to=None, message="two", mode=Mode.CONVERSATION)
        await h.advance(1.0)
        hung = await h.manager.initiate(to=None, message="three", mode=Mode.CONVERSATION)
        # the carrier hung up `hung` while we were down; `old` answered long ago
        h.provider.ledger.append("ended", hung.provider_call_id, reason="completed")
        rec = await h.store.get(old.call_id)
        assert rec is not None and rec.answered_at is not None
        await h.store.save(rec.model_copy(update={"answered_at": rec.answered_at - 500}))
        # a dial that was never confirmed (crash between persist and dial)
        ghost = rec.model_copy(
            update={"call_id": "ghost", "provider_call_id": None, "answered_at": None}
        )
        await h.store.save(ghost)
    dials_before = [e for e in h.ledger() if e["op"] == "dial"]
    async with harness(tmp_path, overrides, start=h.clock.now()) as h2:
        summary = {c.call_id: c for c in await h2.store.list_recent(10)}
        assert summary[live.call_id].state == CallState.LISTENING
        assert summary[old.call_id].state == CallState.TIMEOUT
        assert summary[hung.call_id].state == CallState.COMPLETED
        assert summary["ghost"].state == CallState.ERROR
        assert summary["ghost"].metadata["restoreOutcome"] == "dial-unconfirmed"
        assert [e for e in h2.ledger() if e["op"] == "dial"] == dials_before
        # the kept call's max-duration timer was re-armed with the remaining time
        await h2.advance(98.0)
        assert (await h2.store.get(live.call_id)).state == CallState.LISTENING  # type: ignore[union-attr]
        await h2.advance(2.0)
        assert (await h2.store.get(live.call_id)).state == CallState.TIMEOUT  # type: ignore[union-attr]
        restored = [e for e in await h2.store.events() if e.type == "call.restored"]
        assert len(restored) == 4


async def test_inline_notify_is_not_spoken_twice(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        h.provider.delivers_notify_inline = True
        call = await h.manager.initiate(to=None, message="Your code is 1234", mode=Mode.NOTIFY)
        await h.advance(1.0)
        assert h.provider.callees[call.provider_call_id].heard == []  # the carrier says it
        rec = await h.manager.get(call.call_id)
        assert rec is not None and [e.text for e in rec.transcript] == ["Your code is 1234"]
        # the carrier reports the message's end: only a fallback hang-up is armed until then
        assert rec.metadata["greeted"] is True
        assert h.manager.timers.armed(call.call_id, "notify-hangup")
        await h.advance(2.0)
        assert not (await h.manager.get(call.call_id)).terminal  # type: ignore[union-attr]
        ended = CallEvent(type=EventType.PLAYBACK_ENDED, call_id=call.call_id)
        assert await h.manager.handle_event(ended) == "applied"
        await h.advance(3.1)  # notifyHangupDelaySec after it was said, as on every carrier
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == CallState.HANGUP_BOT


async def test_notify_waits_for_playback_end_before_hanging_up(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        h.provider.reports_playback_end = True
        long_message = "This is a long message. " * 20
        call = await h.manager.initiate(to=None, message=long_message, mode=Mode.NOTIFY)
        await h.advance(1.0)
        await h.advance(20)  # a fixed 3 s delay would have cut the message off by now
        assert not (await h.manager.get(call.call_id)).terminal  # type: ignore[union-attr]
        ended = CallEvent(type=EventType.PLAYBACK_ENDED, call_id=call.call_id)
        assert await h.manager.handle_event(ended) == "applied"
        await h.advance(2.9)
        assert not (await h.manager.get(call.call_id)).terminal  # type: ignore[union-attr]
        await h.advance(0.2)
        assert (await h.manager.get(call.call_id)).state == CallState.HANGUP_BOT  # type: ignore[union-attr]


async def test_provider_call_id_upgrade_keeps_alias(tmp_path: Path) -> None:
    async with harness(tmp_path, {"mock": {"silent": True}}) as h:
        call = await h.manager.initiate(to=None, message="hi", mode=Mode.CONVERSATION)
        old = call.provider_call_id
        upgrade = CallEvent(type=EventType.RINGING, call_id=call.call_id, provider_call_id="uuid-2")
        await h.manager.handle_event(upgrade)
        rec = await h.store.find_by_provider_call_id("mock", "uuid-2")
        assert rec is not None and rec.metadata["providerCallIdAliases"] == [old]
        # an event matched only by a carrier id never rewrites the id
        other = CallEvent(type=EventType.DTMF, provider_call_id="uuid-2", digits="1")
        await h.manager.handle_event(other)
        assert (await h.store.get(call.call_id)).provider_call_id == "uuid-2"  # type: ignore[union-attr]


async def test_playback_ended_before_greeting_recorded_still_hangs_up_on_time(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path) as h:
        h.provider.reports_playback_end = True
        original_speak = h.provider.speak

        async def speak_and_finish(call: CallRecord, text: str) -> None:
            await original_speak(call, text)
            # the carrier reports the end of playback before speak() has even returned
            ended = CallEvent(type=EventType.PLAYBACK_ENDED, call_id=call.call_id)
            await h.manager.handle_event(ended)

        h.provider.speak = speak_and_finish
        call = await h.manager.initiate(to=None, message="Short note", mode=Mode.NOTIFY)
        await h.advance(1.0)
        await h.advance(3.1)  # notifyHangupDelaySec after playback, not the long fallback
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == CallState.HANGUP_BOT


async def test_waiting_turn_token_is_on_the_record_while_speaking(tmp_path: Path) -> None:
    async with harness(tmp_path, {"mock": {"silent": True}}) as h:
        call = await h.manager.initiate(to=None, message="Hello", mode=Mode.CONVERSATION)
        await h.advance(1.0)
        assert "turnToken" not in (await h.store.get(call.call_id)).metadata  # type: ignore[union-attr]
        task = asyncio.ensure_future(h.manager.continue_call(call.call_id, "Question?"))
        await h.advance(0.1)
        token = h.manager._turns[call.call_id].token
        assert (await h.store.get(call.call_id)).metadata["turnToken"] == token  # type: ignore[union-attr]
        await h.manager.end(call.call_id)
        with pytest.raises(Conflict):
            await task


@pytest.mark.parametrize(
    ("reason", "error"),
    [(CallState.HANGUP_BOT, None), (CallState.ERROR, "the media stream's instance stopped")],
)
async def test_our_hang_up_keeps_its_reason_when_the_carriers_end_arrives_first(
    tmp_path: Path, reason: CallState, error: str | None
) -> None:
    # The carrier's "ended" webhook may be applied while our hang-up request is still under
    # way: the call must still end for the reason we asked, with its error on the record.
    async with harness(tmp_path, {"mock": {"silent": True}}) as h:
        call = await h.manager.initiate(to="+15555550199", message="Hi", mode=Mode.CONVERSATION)
        await h.advance(1.0)
        hang_up = h.provider.hangup

        async def carrier_ends_first(record: CallRecord, why: str) -> None:
            await h.manager.handle_event(
                CallEvent(
                    type=EventType.ENDED,
                    call_id=record.call_id,
                    provider_call_id=record.provider_call_id,
                    reason=CallState.COMPLETED,
                )
            )
            await hang_up(record, why)

        h.provider.hangup = carrier_ends_first
        await h.manager.end(call.call_id, reason, error=error)
        rec = await h.manager.get(call.call_id)
        assert rec is not None and rec.state == reason
        assert rec.metadata.get("error") == error
