"""End to end on real sockets: the server (mock provider) + the `openai` responder + FakeOpenAI.

The mock provider has no audio, so this is the native-speech path: voice-to-voice is measured
from the final speech webhook being sent to the first reply handed to `provider.speak`, and
must stay within the fake model's first-token delay + 40 ms.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.stack import SERVER_CONFIG
from tests.support import StolenTime, merge, wait_until
from voice_call.agent.spoken import CONTRACT
from voice_call.config import DEFAULT_APOLOGY, parse_config
from voice_call.models import CallRecord, CallState, Mode, Speaker, TurnKind
from voice_call.runtime import Runtime
from voice_call.server.app import build_app
from voice_call.server.serve import start_background
from voice_call.sim.openai import ChatScript, FakeOpenAI

FIRST_TOKEN_MS = 150
BUDGET_MS = 40


@dataclass
class Line:
    runtime: Runtime
    http: httpx.AsyncClient
    fake: FakeOpenAI
    spoken: list[tuple[float, str]]
    call_id: str = ""

    async def record(self) -> CallRecord:
        record = await self.runtime.store.get(self.call_id)
        assert record is not None
        return record

    async def say(self, text: str, final: bool = True) -> float:
        """The caller says `text` (a speech webhook); returns when it was sent (monotonic)."""
        event = {"type": "call.speech", "callId": self.call_id, "transcript": text}
        sent = time.monotonic()
        response = await self.http.post(
            self.runtime.config.serve.path, json={"event": {**event, "isFinal": final}}
        )
        assert response.status_code == 200, response.text
        return sent

    async def replies(self, count: int) -> list[Any]:
        async def recorded() -> bool:
            rec = await self.record()
            return sum(1 for t in rec.latency if t.kind == TurnKind.REPLY) >= count

        await wait_until(recorded, timeout=10)
        return [t for t in (await self.record()).latency if t.kind == TurnKind.REPLY]


Open = Callable[..., Awaitable[Line]]


@pytest.fixture
async def open_line(tmp_path: Path) -> AsyncIterator[Open]:
    """`await open_line(chat, **config)`: a live conversation call, greeted and listening."""
    stack: list[Callable[[], Awaitable[None]]] = []

    async def open_(
        chat: ChatScript, key: str = "sk-test", seed_style: bool = False, **overrides: Any
    ) -> Line:
        """`seed_style`: the seed's way to turn replies on, a top-level responseModel and no
        responder.provider (the key is openaiApiKey; responder.baseUrl finds the fake)."""
        fake = FakeOpenAI("sk-test", chat=chat)
        await fake.__aenter__()
        stack.append(lambda: fake.__aexit__(None, None, None))
        chosen = {"openaiApiKey": key} if seed_style else {"provider": "openai", "apiKey": key}
        responder = {"baseUrl": fake.url, **overrides.pop("responder", {})}
        if not seed_style:
            responder.update(chosen)
        base = {k: v for k, v in SERVER_CONFIG.items() if k != "responder"}
        config = parse_config(
            merge(
                base,
                {
                    "responder": responder,
                    "responseModel": "openai/gpt-test",
                    "mock": {"silent": True},
                    **(chosen if seed_style else {}),
                    **overrides,
                },
            )
        )
        runtime = Runtime(config, tmp_path / f"home{len(stack)}")
        spoken: list[tuple[float, str]] = []
        speak = runtime.provider.speak

        async def spy(call: CallRecord, text: str) -> None:
            spoken.append((time.monotonic(), text))
            await speak(call, text)

        runtime.provider.speak = spy  # type: ignore[method-assign]
        server = await start_background(runtime, app=build_app(runtime), announce=False)
        stack.append(server.stop)
        http = httpx.AsyncClient(base_url=server.url, timeout=10)
        stack.append(http.aclose)
        assert (await http.get("/healthz")).status_code == 200  # the test's own connection
        line = Line(runtime, http, fake, spoken)
        call = await runtime.manager.initiate(
            to="+15555550123", message="Hello", mode=Mode.CONVERSATION
        )
        line.call_id = call.call_id

        async def listening() -> bool:
            return (await line.record()).state == CallState.LISTENING

        await wait_until(listening)
        return line

    yield open_
    for close in reversed(stack):
        await close()


def reply_lines(line: Line, after: float) -> list[str]:
    return [text for at, text in line.spoken if at >= after]


async def test_voice_to_voice_is_first_token_plus_at_most_40_ms(open_line: Open) -> None:
    chat = ChatScript(reply="Sure. It is three.", first_token_ms=FIRST_TOKEN_MS, per_token_ms=5)
    line = await open_line(chat)
    for turn in range(1, 4):
        with StolenTime() as stolen:  # a loaded machine's delay is allowed, measured
            sent = await line.say(f"What time is it, take {turn}?")
            figures = (await line.replies(turn))[-1]
        first = next(at for at, text in line.spoken if at >= sent)
        measured_ms = (first - sent) * 1000
        budget_ms = FIRST_TOKEN_MS + BUDGET_MS + stolen.ms
        assert FIRST_TOKEN_MS <= measured_ms <= budget_ms, (measured_ms, stolen.ms)
        assert figures.voice_to_voice_ms is not None
        assert figures.voice_to_voice_ms <= measured_ms
        assert figures.responder_first_token_ms is not None
        assert figures.responder_first_token_ms >= FIRST_TOKEN_MS
        assert figures.outcome == "spoken"
        assert reply_lines(line, sent) == ["Sure.", "It is three."]
    rec = await line.record()
    assert rec.state == CallState.LISTENING
    assert [e.text for e in rec.transcript[-3:]] == [
        "What time is it, take 3?",
        "Sure.",
        "It is three.",
    ]
    messages = line.fake.requests[-1].body["messages"]
    assert messages[0]["role"] == "system" and "+15555550123" in messages[0]["content"]
    # the model saw the earlier turns, a reply spoken in two sentences as one message
    assert {"role": "assistant", "content": "Sure. It is three."} in messages


async def test_reply_starts_speaking_before_the_model_finishes(open_line: Open) -> None:
    text = "Of course. Your table is booked for seven tonight. Is there anything else?"
    chat = ChatScript(reply=text, first_token_ms=50, per_token_ms=40)
    line = await open_line(chat)
    sent = await line.say("Can you book a table?")
    figures = (await line.replies(1))[-1]
    said = [(at, t) for at, t in line.spoken if at >= sent]
    assert [t for _, t in said] == [
        "Of course.",
        "Your table is booked for seven tonight.",
        "Is there anything else?",
    ]
    assert figures.responder_total_ms is not None and figures.voice_to_voice_ms is not None
    # 12 tokens at 40 ms: the model needs ~490 ms; the first sentence went out after ~90 ms
    assert figures.responder_total_ms - figures.voice_to_voice_ms >= 300
    assert (said[1][0] - said[0][0]) * 1000 >= 150  # sentences leave as they complete


async def test_caller_speaking_mid_reply_drops_the_rest(open_line: Open) -> None:
    chat = ChatScript(
        reply=["One. Two. Three. Four. Five. Six.", "Okay, stopping."],
        first_token_ms=20,
        per_token_ms=150,
    )
    line = await open_line(chat)
    sent = await line.say("Count to six please.")

    async def started() -> bool:
        return reply_lines(line, sent) == ["One."]

    await wait_until(started)
    await line.say("wait", final=False)  # the caller starts talking: barge-in
    figures = (await line.replies(1))[-1]
    assert figures.outcome == "interrupted"
    dropped = reply_lines(line, sent)
    assert dropped in (["One."], ["One.", "Two."])  # "Two." may already have been on its way
    again = await line.say("Wait, stop.")
    second = (await line.replies(2))[-1]
    assert second.outcome == "spoken"
    assert reply_lines(line, again) == ["Okay, stopping."]
    assert reply_lines(line, sent)[: len(dropped)] == dropped
    assert "Three." not in reply_lines(line, sent)


async def test_failing_responder_says_sorry_and_the_call_stays_up(open_line: Open) -> None:
    line = await open_line(ChatScript(reply="unused"), key="sk-wrong")
    sent = await line.say("Hello?")
    figures = (await line.replies(1))[-1]
    assert figures.outcome == "apology"
    assert reply_lines(line, sent) == [DEFAULT_APOLOGY]
    assert line.fake.requests[-1].status == 401
    rec = await line.record()
    assert rec.state == CallState.LISTENING and not rec.terminal
    assert rec.transcript[-1].speaker == Speaker.BOT and rec.transcript[-1].text == DEFAULT_APOLOGY
    events = await line.runtime.store.events(call_id=line.call_id)
    failed = [e for e in events if e.type == "bot.reply-failed"]
    assert failed and "401" in failed[0].data["error"]


async def test_slow_responder_times_out_into_the_apology(open_line: Open) -> None:
    chat = ChatScript(reply="Too late.", first_token_ms=3000)
    line = await open_line(chat, responseTimeoutMs=300, responder={"apologyText": "One moment."})
    sent = await line.say("Are you there?")
    figures = (await line.replies(1))[-1]
    assert figures.outcome == "apology"
    assert reply_lines(line, sent) == ["One moment."]
    assert figures.voice_to_voice_ms is not None and 300 <= figures.voice_to_voice_ms < 1500
    rec = await line.record()
    assert rec.state == CallState.LISTENING


async def test_response_model_alone_turns_replies_on(open_line: Open) -> None:
    """The seed's config: responseModel + responseSystemPrompt, no responder.provider."""
    chat = ChatScript(reply="We open at nine.", first_token_ms=0, per_token_ms=0)
    line = await open_line(chat, seed_style=True, responseSystemPrompt="You answer for a bakery.")
    assert line.runtime.config.responder.provider == "none"  # not written: chosen by the model
    sent = await line.say("When do you open?")
    figures = (await line.replies(1))[-1]
    assert figures.outcome == "spoken"
    assert reply_lines(line, sent) == ["We open at nine."]
    system = line.fake.requests[-1].body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You answer for a bakery.")


@pytest.mark.parametrize(
    "reply",
    [
        '{"spoken": "Of course. Your table is booked for seven tonight."}',
        '```json\n{"spoken": "Of course. Your table is booked for seven tonight."}\n```',
        "The user wants a table. I should confirm briefly.\n\n"
        "Of course. Your table is booked for seven tonight.",
        "<think>They asked for a table.</think>Of course. Your table is booked for seven tonight.",
    ],
)
async def test_only_the_spoken_words_of_a_streamed_reply_are_said(
    open_line: Open, reply: str
) -> None:
    chat = ChatScript(reply=reply, first_token_ms=0, per_token_ms=30)
    line = await open_line(chat)
    sent = await line.say("Can you book a table?")
    figures = (await line.replies(1))[-1]
    said = [(at, t) for at, t in line.spoken if at >= sent]
    assert [t for _, t in said] == ["Of course.", "Your table is booked for seven tonight."]
    assert figures.outcome == "spoken"
    rec = await line.record()
    assert [e.text for e in rec.transcript[-2:]] == [t for _, t in said]
    # the first sentence went out while the model was still writing the second
    assert (said[1][0] - said[0][0]) * 1000 >= 100
    assert line.fake.requests[-1].body["messages"][0]["content"].endswith(CONTRACT)


def test_turn_latency_bench_smoke() -> None:
    """`python -m bench turn_latency --smoke` keeps working: every turn measured, both targets
    judged. Whether a target is met is the benchmark's to say, not a test's: a timed assertion
    failed CI with p50 5.13 ms against 5 on a machine running two suites at once."""
    root = Path(__file__).resolve().parents[2]
    bench = subprocess.run(
        [sys.executable, "-m", "bench", "turn_latency", "--smoke"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bench.returncode == 0, bench.stderr[-2000:]
    out = bench.stdout
    assert "| openai (FakeOpenAI, 0 ms): recorded voice-to-voice | 30 |" in out
    assert out.count("| met (p50") + out.count("| MISSED (p50") == 2  # both targets judged
