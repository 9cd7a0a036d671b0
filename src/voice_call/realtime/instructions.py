"""The instructions a realtime session opens with.

The persona comes from `realtime.instructions`, else the response system prompt, else a short
built-in phone prompt. Whatever the persona, the same rules follow it: this is a phone call (what
the model says is heard, never read), when to `consult` (`realtime.consultPolicy`), and how to
hang up (say goodbye, then `end_call`, so the goodbye is heard before the line drops).
"""

from __future__ import annotations

from typing import Literal

ConsultPolicy = Literal["auto", "substantive", "always"]

PHONE_PROMPT = (
    "You are a friendly, capable assistant talking with someone on a phone call. "
    "Help them with what they called about."
)

SPOKEN_STYLE = (
    "This is a live phone call: everything you say is heard, never read. Keep each reply brief "
    "and natural, one or two short sentences, the way a person talks on the phone. No lists, "
    "markdown, emoji, links or symbols; say numbers, dates and spellings the way they are "
    "spoken. If the caller interrupts you, stop and listen."
)

CONSULT_RULES: dict[ConsultPolicy, str] = {
    "auto": (
        "You can call the consult tool to ask the assistant behind this call. Use it when a "
        "question needs deeper reasoning, facts you are not sure of, or current information; "
        "answer simple things yourself."
    ),
    "substantive": (
        "Call the consult tool for every substantive question or request, and speak its answer "
        "in your own words; answer only greetings, small talk and confirmations yourself."
    ),
    "always": (
        "Call the consult tool before you answer anything the caller asks or asks for, and "
        "speak its answer in your own words; say nothing of substance without it."
    ),
}

HANGUP_RULE = (
    "When the conversation is over, or the caller wants to end it, say a short goodbye and then "
    "call the end_call tool. Never end the call without saying goodbye first."
)


def build_instructions(
    *,
    instructions: str | None = None,
    system_prompt: str | None = None,
    consult: bool = True,
    consult_policy: ConsultPolicy = "auto",
) -> str:
    """`realtime.instructions`, else `system_prompt`, else the built-in prompt, then the rules
    of the phone (spoken style, consult when `consult` is on, hanging up)."""
    persona = next(
        (text.strip() for text in (instructions, system_prompt) if text and text.strip()),
        PHONE_PROMPT,
    )
    parts = [persona, SPOKEN_STYLE]
    if consult:
        parts.append(CONSULT_RULES[consult_policy])
    parts.append(HANGUP_RULE)
    return "\n\n".join(parts)
