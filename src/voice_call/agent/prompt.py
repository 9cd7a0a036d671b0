"""What a reply is generated with, per call: model, system prompt and timeout (the responders
and the manager's reply deadline read it).

The seed's top-level `responseModel`, `responseSystemPrompt` and `responseTimeoutMs` are the
source of truth; an inbound call to a number listed in `numbers` uses that number's overrides.
Whatever the prompt, the model is also asked for the spoken-output contract (agent/spoken.py).
"""

from __future__ import annotations

from voice_call.agent.memory import remote_number
from voice_call.agent.spoken import CONTRACT
from voice_call.config import Config, NumberRoute
from voice_call.languages import instructions_line, own_language
from voice_call.models import CallRecord, Direction
from voice_call.numbers import screened_route

DEFAULT_MODEL = "openai/gpt-4o-mini"

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant on a phone call. Keep every reply brief and "
    "conversational: one or two short sentences of plain spoken language, with no lists, "
    "markdown, emoji or links, since everything you write is read aloud. What the caller says "
    "reaches you through speech recognition and may contain mistakes; if something is unclear, "
    "ask. The phone number of the person on the line is {number}. When the conversation is "
    "over, or the caller asks you to hang up, call the end_call tool with a short goodbye."
)


def number_route(config: Config, call: CallRecord) -> NumberRoute | None:
    """The `numbers[...]` entry an inbound call was routed by, if any."""
    return screened_route(config, call) if call.direction == Direction.INBOUND else None


def call_agent_id(config: Config, call: CallRecord) -> str:
    """The agent a call belongs to: its number's `agentId` (inbound), else the top level's."""
    route = number_route(config, call)
    return (route and route.agent_id) or config.agent_id


def response_model(config: Config, call: CallRecord) -> str:
    route = number_route(config, call)
    return (route and route.response_model) or config.response_model or DEFAULT_MODEL


def response_timeout_ms(config: Config, call: CallRecord) -> int:
    route = number_route(config, call)
    if route is not None and route.response_timeout_ms is not None:
        return route.response_timeout_ms
    return config.response_timeout_ms


def system_prompt(config: Config, call: CallRecord) -> str:
    route = number_route(config, call)
    custom = (route and route.response_system_prompt) or config.response_system_prompt
    if custom:
        return custom
    return DEFAULT_SYSTEM_PROMPT.format(number=remote_number(call) or "unknown")


def call_language(config: Config, call: CallRecord) -> str:
    """The language a call is held in: its own (initiate's), its number's, the carrier block's,
    else the top-level `language` (languages.py spells it per engine)."""
    own = own_language(call.metadata)
    if own:
        return own
    route = number_route(config, call)
    block = getattr(config, config.provider, None)
    carrier = getattr(block, "language", None)
    return (route and route.language) or carrier or config.language


def instructions(config: Config, call: CallRecord) -> str:
    """The system message: the call's prompt, the language to answer in (when not the
    default), then the spoken-output contract."""
    language = instructions_line(call_language(config, call))
    middle = f"\n\n{language}" if language else ""
    return f"{system_prompt(config, call)}{middle}\n\n{CONTRACT}"
