"""What `realtime.enabled: true` needs of the rest of the file, and the realtime settings this
version refuses rather than ignores.

Realtime voice answers calls with a speech-to-speech model over a carrier media stream, so it
cannot share a call with `streaming` (STT → responder → TTS), needs a carrier that streams
(not `mock`), and — the seed's rule — an inbound policy other than `disabled`. Custom tools are
answered by the HTTP hook, and the consult tool asks the configured responder.
"""

from __future__ import annotations

from typing import Any

from voice_call.config.errors import Loc
from voice_call.config.raw import is_missing, lookup

NOT_IN_THIS_VERSION = "not available in this version — remove it"
# the seed's realtime keys this version does not build: (path under `realtime`, what it is)
_REFUSED: tuple[tuple[tuple[str, ...], str], ...] = (
    (("fastContext", "enabled"), "the fast memory/session lookup"),
    (("agentContext", "enabled"), "the workspace persona capsule"),
    (("consultThinkingLevel",), "the consult's thinking level"),
    (("consultFastMode",), "the consult's fast mode"),
)


def realtime_problems(raw: dict[str, Any], realtime: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Problems of a config with `realtime.enabled: true` (`realtime`: its raw block)."""
    problems: list[tuple[Loc, str]] = []
    if lookup(lookup(raw, "streaming"), "enabled") is True:
        problems.append(
            (
                ("realtime", "enabled"),
                "cannot be used together with streaming.enabled — turn one of them off"
                " (realtime: the model hears and answers; streaming: STT, responder and TTS)",
            )
        )
    if lookup(raw, "provider", "mock") == "mock":
        problems.append(
            (
                ("realtime", "enabled"),
                'needs a carrier with media streams (provider "twilio", "telnyx" or "plivo"):'
                " the mock provider has none — to try realtime voice offline run"
                " `voicecall demo --realtime`",
            )
        )
    if lookup(raw, "inboundPolicy", "disabled") == "disabled":
        problems.append(
            (
                ("inboundPolicy",),
                'must not be "disabled" when realtime.enabled is true — set "allowlist" (the'
                ' callers to let in under allowFrom) or "open"',
            )
        )
    return problems + _refused_keys(realtime) + _tool_problems(raw, realtime)


def _refused_keys(realtime: dict[str, Any]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for path, what in _REFUSED:
        section: Any = realtime
        for key in path[:-1]:
            section = lookup(section, key)
        value = lookup(section, path[-1])
        if value is None or value is False:
            continue
        problems.append((("realtime", *path), f"{what} is {NOT_IN_THIS_VERSION}"))
    return problems


def _responder(raw: dict[str, Any]) -> str:
    """The responder the file chooses (agent/responders/factory.py `responder_name`)."""
    chosen = lookup(lookup(raw, "responder"), "provider")
    if chosen is not None:
        return str(chosen)
    return "none" if is_missing(lookup(raw, "responseModel")) else "openai"


def _tool_problems(raw: dict[str, Any], realtime: dict[str, Any]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    responder = _responder(raw)
    tools = lookup(realtime, "tools")
    if isinstance(tools, list) and tools and responder != "hook":
        problems.append(
            (
                ("realtime", "tools"),
                'custom tools are answered by the HTTP hook — set responder.provider: "hook"'
                " with responder.url, or remove them",
            )
        )
    policy = lookup(realtime, "toolPolicy")
    if policy is not None and policy != "none" and responder == "none":
        problems.append(
            (
                ("realtime", "toolPolicy"),
                f'"{policy}" offers the consult tool, which asks the responder, and none is'
                ' configured — set responder.provider ("openai" or "hook"), or toolPolicy:'
                ' "none"',
            )
        )
    return problems
