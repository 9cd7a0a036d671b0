"""What the carriers' realtime end-to-end tests share: the fake model's script, the realtime
part of the config (our server's model on the fake OpenAI Realtime conversation socket, or the
fake Gemini Live), and the checks that say a call ran the realtime path and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tests.providers.streaming_support import CalleeLines
from voice_call.models import CallRecord, Speaker
from voice_call.sim.common import AppFrame, EmulatedCall
from voice_call.sim.openai import FakeOpenAI
from voice_call.sim.openai.conversation import ConversationScript, Reply

KEY = "sk-test"
GREETING = "Hello, this is the clinic calling."
QUESTION = "Is the clinic open on Saturday?"
ANSWER = "Yes, we are open on Saturday morning."
LONG = " ".join(f"Sentence number {n} is here to take a while to say." for n in range(8))
BARGE = "Sorry, can I stop you there?"
GOODBYE = "Thanks for calling, goodbye."


def model_script(
    replies: Iterable[Reply] | Callable[[str], Reply],
    lines_of: Callable[[EmulatedCall], Iterable[str]],
    **fields: Any,
) -> tuple[ConversationScript, CalleeLines]:
    """The fake model's answers, and the caller's words as the emulator's callee said them."""
    source = CalleeLines(lines_of)
    fields.setdefault("first_audio_ms", 60)
    fields.setdefault("per_chunk_ms", 20)
    fields.setdefault("first_delta_ms", 20)
    fields.setdefault("per_word_ms", 10)
    return ConversationScript(replies, caller_source=source, **fields), source


def realtime_config(fake: FakeOpenAI, **realtime: Any) -> dict[str, Any]:
    openai = {"url": fake.conversation_url, "silenceDurationMs": 300, "vadThreshold": 0.3}
    return {
        "openaiApiKey": KEY,
        "inboundPolicy": "allowlist",
        "responder": {"provider": "echo"},
        "realtime": {"enabled": True, "providers": {"openai": openai}, **realtime},
    }


def lines(record: CallRecord) -> list[tuple[str, str]]:
    return [(e.speaker.value, e.text) for e in record.transcript]


def both_sides(status: dict[str, Any]) -> set[str]:
    """The speakers of an RPC status's transcript."""
    return {entry["speaker"] for entry in status["transcript"]}


def media_after(frames: list[AppFrame], at: float) -> list[AppFrame]:
    return [f for f in frames if f.event in ("media", "playAudio") and f.at > at]


__all__ = ["Speaker"]
