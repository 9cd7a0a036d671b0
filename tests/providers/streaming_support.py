"""What the three carriers' streaming tests share: the fake STT's source of caller lines and the
streaming part of the config (our server's STT and TTS on the fake OpenAI)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from voice_call.sim.common import EmulatedCall
from voice_call.sim.openai.server import FakeOpenAI, TranscriptTurn

KEY = "sk-test"


class CalleeLines:
    """The fake STT's transcript source: the callee's stream lines, each handed out once, in
    the order the callees said them (`lines_of` reads them off an emulated call)."""

    def __init__(self, lines_of: Callable[[EmulatedCall], Iterable[str]]) -> None:
        self.lines_of = lines_of
        self.calls: Callable[[], Iterable[EmulatedCall]] = lambda: ()
        self.given = 0

    def __call__(self, turn: TranscriptTurn) -> str:
        said = [line for call in self.calls() for line in self.lines_of(call)]
        if self.given >= len(said):
            return ""  # a stretch of noise, not a line
        self.given += 1
        return str(said[self.given - 1])


def said_via_stream(call: EmulatedCall) -> list[str]:
    """Twilio's and Plivo's emulators log the callee's stream lines here."""
    lines: list[str] = call.extra.get("said_via_stream", [])
    return lines


def streaming_config(fake: FakeOpenAI) -> dict[str, Any]:
    return {
        "openaiApiKey": KEY,
        "responder": {"provider": "echo"},
        "streaming": {
            "enabled": True,
            "providers": {
                "openai": {"url": fake.realtime_url, "silenceDurationMs": 300, "vadThreshold": 0.3}
            },
        },
        "tts": {"provider": "openai", "providers": {"openai": {"baseUrl": fake.url, "speed": 2.5}}},
    }
