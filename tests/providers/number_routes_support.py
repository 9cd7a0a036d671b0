"""Shared by each carrier's tests/providers/<carrier>/test_number_routes.py: two of our numbers
with their own routes, and a fake OpenAI chat that notes the system prompt of every request.

SALES answers with its own responder (`openai`, against FakeOpenAI) and the SALES prompt,
greeting, voice and language; SUPPORT lets in only the callers on its own allowFrom list; the
top level is open with the echo responder, so a call anywhere else is answered by echo.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from voice_call.sim.openai import ChatScript, FakeOpenAI

SALES_GREETING = "Thanks for calling the sales desk."
SALES_PROMPT = "You are the sales desk of Acme. Offer the spring discount."
SALES_REPLY = "Our spring discount is ten percent."
OUTSIDER = "+15550007777"  # the only caller SUPPORT lets in


@dataclass
class PromptLog:
    """The system message of every chat request the fake model answered."""

    prompts: list[str] = field(default_factory=list)

    def reply(self, messages: list[dict[str, Any]]) -> str:
        system = next((m for m in messages if m.get("role") == "system"), {})
        self.prompts.append(str(system.get("content", "")))
        return SALES_REPLY


@asynccontextmanager
async def routed_model() -> AsyncIterator[tuple[FakeOpenAI, PromptLog]]:
    log = PromptLog()
    chat = ChatScript(reply=log.reply, first_token_ms=0, per_token_ms=0)
    async with FakeOpenAI("sk-test", chat=chat) as fake:
        yield fake, log


def routed_config(
    fake: FakeOpenAI, sales: str, support: str, *, voice: str, language: str
) -> dict[str, Any]:
    """Config overrides: SALES (`sales`) and SUPPORT (`support`) routes, top level open."""
    return {
        "inboundPolicy": "open",
        "responder": {"provider": "echo"},
        "numbers": {
            sales: {
                "inboundGreeting": SALES_GREETING,
                "responseSystemPrompt": SALES_PROMPT,
                "responseModel": "openai/gpt-test",
                "voice": voice,
                "language": language,
                "responder": {"provider": "openai", "baseUrl": fake.url, "apiKey": "sk-test"},
            },
            support: {"inboundPolicy": "allowlist", "allowFrom": [OUTSIDER]},
        },
    }
