"""Auto-response rules in the CallManager (fake clock, mock provider, scripted responders).

Inbound calls always get replies, outbound ones only in conversation mode, never while a
`continue_call` waits; a reply the caller talks over is dropped; a failing or slow responder
makes the bot apologise and keeps the call up; the `end_call` request hangs up after the
goodbye; each reply's figures are recorded and handed to turn listeners.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.manager.stack import Harness, harness
from voice_call.agent.responders.base import ReplyContext
from voice_call.agent.responders.echo import EchoResponder
from voice_call.config import DEFAULT_APOLOGY
from voice_call.models import (
    CallEvent,
    CallRecord,
    CallState,
    Direction,
    EventType,
    Mode,
    Speaker,
    TurnKind,
    TurnLatency,
)


class Gated:
    """Yields scripted sentences, each only once the test releases it."""

    def __init__(self, *sentences: str) -> None:
        self.sentences = list(sentences)
        self.release = asyncio.Semaphore(0)
        self.calls = 0
        self.closed = 0

    async def stream(self, call: CallRecord, context: ReplyContext) -> AsyncIterator[str]:
        self.calls += 1
        try:
            for sentence in self.sentences:
                await self.release.acquire()
                yield sentence
        finally:
            self.closed += 1


class Failing:
    async def stream(self, call: CallRecord, context: ReplyContext) -> AsyncIterator[str]:
        raise RuntimeError("model exploded")
        yield ""  # pragma: no cover - makes this an async generator


class Goodbye:
    async def stream(self, call: CallRecord, context: ReplyContext) -> AsyncIterator[str]:
        context.request_end("test")
        yield "Thanks for calling. Bye!"


class Silent:
    async def stream(self, call: CallRecord, context: ReplyContext) -> AsyncIterator[str]:
        return
        yield ""  # pragma: no cover


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def live_call(h: Harness) -> str:
    call = await h.manager.initiate(to=None, message="Hello", mode=Mode.CONVERSATION)
    await h.clock.advance(1.0)  # answered, greeted, listening (the callee is silent)
    await settle()
    return call.call_id


async def caller_says(h: Harness, call_id: str, text: str, final: bool = True) -> None:
    event = CallEvent(type=EventType.SPEECH, call_id=call_id, transcript=text, is_final=final)
    assert await h.manager.handle_event(event) == "applied"
    await settle()


def bot_lines(rec: CallRecord | None) -> list[str]:
    assert rec is not None
    return [e.text for e in rec.transcript if e.speaker == Speaker.BOT]


def replies(rec: CallRecord | None) -> list[TurnLatency]:
    assert rec is not None
    return [t for t in rec.latency if t.kind == TurnKind.REPLY]


SILENT: dict[str, Any] = {"mock": {"silent": True}}


async def test_inbound_calls_always_get_replies(tmp_path: Path) -> None:
    overrides = {"inboundPolicy": "open", **SILENT}
    async with harness(tmp_path, overrides, responder=EchoResponder()) as h:
        await h.manager.handle_event(
            CallEvent(
                type=EventType.INITIATED,
                provider_call_id="in-1",
                direction=Direction.INBOUND,
                **{"from": "+15555550100", "to": "+15555550111"},
            )
        )
        await h.manager.handle_event(CallEvent(type=EventType.ANSWERED, provider_call_id="in-1"))
        await h.advance(0)
        rec = await h.store.find_by_provider_call_id("mock", "in-1")
        assert rec is not None and rec.mode == Mode.CONVERSATION
        await caller_says(h, rec.call_id, "I need a plumber")
        await h.advance(0)
        rec = await h.store.get(rec.call_id)
        assert bot_lines(rec)[-1] == "You said: I need a plumber"
        assert rec is not None and rec.state == CallState.LISTENING


async def test_outbound_notify_calls_never_get_replies(tmp_path: Path) -> None:
    async with harness(tmp_path, SILENT, responder=EchoResponder()) as h:
        call = await h.manager.initiate(to=None, message="Reminder", mode=Mode.NOTIFY)
        await h.advance(1.0)
        await caller_says(h, call.call_id, "thanks")
        assert bot_lines(await h.store.get(call.call_id)) == ["Reminder"]


async def test_no_reply_while_a_continue_waits_for_the_transcript(tmp_path: Path) -> None:
    async with harness(tmp_path, SILENT, responder=EchoResponder()) as h:
        call_id = await live_call(h)
        task = asyncio.ensure_future(h.manager.continue_call(call_id, "Which day?"))
        await settle()
        await caller_says(h, call_id, "Tuesday")
        assert await task == "Tuesday"
        await h.advance(0)
        rec = await h.store.get(call_id)
        assert bot_lines(rec) == ["Hello", "Which day?"]  # no "You said: Tuesday"
        assert replies(rec) == []


async def test_continue_drops_a_reply_in_flight(tmp_path: Path) -> None:
    responder = Gated("An auto reply.")
    async with harness(tmp_path, SILENT, responder=responder) as h:
        call_id = await live_call(h)
        await caller_says(h, call_id, "Hi")
        assert responder.calls == 1
        task = asyncio.ensure_future(h.manager.continue_call(call_id, "Agent here."))
        await settle()
        assert responder.closed == 1  # the generation was cancelled at once
        responder.release.release()
        await settle()
        await caller_says(h, call_id, "Hello agent")
        assert await task == "Hello agent"
        rec = await h.store.get(call_id)
        assert bot_lines(rec) == ["Hello", "Agent here."]
        assert [t.outcome for t in replies(rec)] == ["interrupted"]


async def test_barge_in_drops_the_rest_of_the_reply(tmp_path: Path) -> None:
    responder = Gated("First part.", "Second part.", "Third part.")
    async with harness(tmp_path, SILENT, responder=responder) as h:
        call_id = await live_call(h)
        await caller_says(h, call_id, "Tell me everything")
        responder.release.release()
        await settle()
        assert bot_lines(await h.store.get(call_id))[-1] == "First part."
        await caller_says(h, call_id, "no wait", final=False)  # the caller starts talking
        responder.release.release()
        responder.release.release()
        await settle()
        assert responder.closed == 1
        rec = await h.store.get(call_id)
        assert bot_lines(rec) == ["Hello", "First part."]
        [turn] = replies(rec)
        assert turn.outcome == "interrupted" and turn.voice_to_voice_ms is not None
        assert rec is not None and rec.state == CallState.SPEAKING  # until the caller finishes


async def test_new_final_words_replace_the_reply_in_flight(tmp_path: Path) -> None:
    responder = Gated("Answer.", "More.")
    async with harness(tmp_path, SILENT, responder=responder) as h:
        call_id = await live_call(h)
        await caller_says(h, call_id, "One")
        await caller_says(h, call_id, "Two")  # before the first reply said anything
        assert responder.calls == 2 and responder.closed == 1
        for _ in range(2):
            responder.release.release()
        await settle()
        rec = await h.store.get(call_id)
        assert bot_lines(rec) == ["Hello", "Answer.", "More."]
        assert [t.outcome for t in replies(rec)] == ["interrupted", "spoken"]
        assert rec is not None and rec.state == CallState.LISTENING


async def test_failing_responder_apologises_and_keeps_listening(tmp_path: Path) -> None:
    async with harness(tmp_path, SILENT, responder=Failing()) as h:
        call_id = await live_call(h)
        await caller_says(h, call_id, "Hello?")
        await h.advance(0)
        rec = await h.store.get(call_id)
        assert bot_lines(rec)[-1] == DEFAULT_APOLOGY
        assert rec is not None and rec.state == CallState.LISTENING
        assert [t.outcome for t in replies(rec)] == ["apology"]
        failed = [e for e in await h.store.events(call_id=call_id) if e.type == "bot.reply-failed"]
        assert failed[0].data["error"] == "RuntimeError: model exploded"


async def test_slow_responder_times_out_on_the_clock(tmp_path: Path) -> None:
    responder = Gated("Much too late.")
    overrides = {"responseTimeoutMs": 2000, **SILENT}
    async with harness(tmp_path, overrides, responder=responder) as h:
        call_id = await live_call(h)
        await caller_says(h, call_id, "Anyone?")
        await h.clock.advance(1.9)
        await settle()
        assert bot_lines(await h.store.get(call_id)) == ["Hello"]
        await h.clock.advance(0.2)
        await settle()
        assert responder.closed == 1
        rec = await h.store.get(call_id)
        assert bot_lines(rec) == ["Hello", DEFAULT_APOLOGY]
        assert rec is not None and rec.state == CallState.LISTENING and not rec.terminal
        await h.clock.advance(60)  # nothing else happens: the call stays up
        await settle()
        assert not (await h.store.get(call_id)).terminal  # type: ignore[union-attr]


async def test_number_route_overrides_the_timeout(tmp_path: Path) -> None:
    overrides = {
        "inboundPolicy": "open",
        "responseTimeoutMs": 60000,
        "numbers": {"+15555550111": {"responseTimeoutMs": 500}},
        **SILENT,
    }
    responder = Gated("late")
    async with harness(tmp_path, overrides, responder=responder) as h:
        await h.manager.handle_event(
            CallEvent(
                type=EventType.INITIATED,
                provider_call_id="in-2",
                direction=Direction.INBOUND,
                **{"from": "+15555550100", "to": "+15555550111"},
            )
        )
        await h.manager.handle_event(CallEvent(type=EventType.ANSWERED, provider_call_id="in-2"))
        await settle()
        rec = await h.store.find_by_provider_call_id("mock", "in-2")
        assert rec is not None
        await caller_says(h, rec.call_id, "hi")
        await h.clock.advance(0.6)
        await settle()
        assert bot_lines(await h.store.get(rec.call_id))[-1] == DEFAULT_APOLOGY


async def test_end_call_request_hangs_up_after_the_goodbye(tmp_path: Path) -> None:
    async with harness(tmp_path, SILENT, responder=Goodbye()) as h:
        call_id = await live_call(h)
        await caller_says(h, call_id, "That's all, thanks")
        await h.advance(0)
        rec = await h.store.get(call_id)
        assert bot_lines(rec)[-1] == "Thanks for calling. Bye!"
        assert rec is not None and rec.metadata["hangupAfterReply"] is True
        await caller_says(h, call_id, "bye")  # no new reply once the goodbye is said
        await h.advance(2.9)
        assert bot_lines(await h.store.get(call_id))[-1] == "Thanks for calling. Bye!"
        assert not (await h.store.get(call_id)).terminal  # type: ignore[union-attr]
        await h.advance(0.2)  # notifyHangupDelaySec = 3
        rec = await h.store.get(call_id)
        assert rec is not None and rec.state == CallState.HANGUP_BOT
        assert [t.outcome for t in replies(rec)] == ["ended"]


async def test_silent_reply_listens_again_and_listeners_get_figures(tmp_path: Path) -> None:
    seen: list[tuple[str, TurnLatency]] = []
    async with harness(tmp_path, SILENT, responder=Silent()) as h:
        h.manager.turn_listeners.append(lambda rec, figures: seen.append((rec.call_id, figures)))
        call_id = await live_call(h)
        await caller_says(h, call_id, "hmm")
        await h.advance(0)
        rec = await h.store.get(call_id)
        assert bot_lines(rec) == ["Hello"]
        assert rec is not None and rec.state == CallState.LISTENING
        [(seen_id, figures)] = seen
        assert seen_id == call_id and figures.outcome == "silent"
        assert figures.voice_to_voice_ms is None and figures.total_ms >= 0
        logged = [e for e in await h.store.events(call_id=call_id) if e.type == "turn.replied"]
        assert logged[0].data["kind"] == "reply" and logged[0].data["outcome"] == "silent"


async def test_call_ending_mid_reply_stops_it(tmp_path: Path) -> None:
    responder = Gated("One.", "Two.")
    async with harness(tmp_path, SILENT, responder=responder) as h:
        call_id = await live_call(h)
        await caller_says(h, call_id, "go")
        await h.manager.handle_event(
            CallEvent(type=EventType.ENDED, call_id=call_id, reason=CallState.HANGUP_USER)
        )
        responder.release.release()
        await settle()
        assert responder.closed == 1
        rec = await h.store.get(call_id)
        assert bot_lines(rec) == ["Hello"] and rec is not None and rec.terminal


async def test_a_provider_whose_speech_replaces_gets_the_whole_reply_at_once(
    tmp_path: Path,
) -> None:
    responder = Gated("First part.", "Second part.")
    async with harness(tmp_path, SILENT, responder=responder) as h:
        h.provider.queues_speech = False  # e.g. a live TwiML update cuts off what is playing
        call_id = await live_call(h)
        await caller_says(h, call_id, "Tell me")
        responder.release.release()
        await settle()
        assert bot_lines(await h.store.get(call_id)) == ["Hello"]  # held until complete
        responder.release.release()
        await settle()
        rec = await h.store.get(call_id)
        assert bot_lines(rec) == ["Hello", "First part. Second part."]
        assert [t.outcome for t in replies(rec)] == ["spoken"]
        assert h.provider.callees[rec.provider_call_id].heard[-1] == "First part. Second part."  # type: ignore[union-attr]
