"""Build what a realtime call needs from config, once per Runtime: the chosen provider's
settings (checked at server start, so a missing key fails there with the config path to fix, as
speech/stack.py does for STT), a fresh model per call, the session it opens with, and the
bridge's settings.

`realtime.provider` picks the service (default "openai"). Keys: OpenAI takes
`realtime.providers.openai.apiKey`, else `openaiApiKey` / OPENAI_API_KEY; Gemini Live takes
`realtime.providers.google.apiKey`, else GEMINI_API_KEY, else GOOGLE_API_KEY.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace

from voice_call.config import Config
from voice_call.errors import Unavailable
from voice_call.languages import instructions_line, own_language
from voice_call.models import CallRecord, Direction
from voice_call.numbers import screened_route
from voice_call.realtime.bridge import BridgeSettings
from voice_call.realtime.instructions import build_instructions
from voice_call.realtime.model import RealtimeError, RealtimeModel, SessionSetup, ToolSpec
from voice_call.realtime.tools import consult_enabled, tool_specs

GEMINI_ENV = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


class RealtimeUnavailable(Unavailable):
    """Realtime voice is on but its model cannot be set up; the message says what to fix."""


def _model_builder(config: Config, env: Mapping[str, str]) -> Callable[[], RealtimeModel]:
    """A maker of unconnected models of the chosen provider, its settings checked now."""
    realtime = config.realtime
    name = realtime.provider or "openai"
    try:
        if name == "google":
            from voice_call.realtime.providers import google

            key = next((env[var] for var in GEMINI_ENV if env.get(var)), None)
            gemini = google.settings_from(realtime.providers.google, key)
            return lambda: google.GeminiLive(gemini)
        from voice_call.realtime.providers import openai

        settings = openai.settings_from(realtime.providers.openai, config.openai_api_key)
        return lambda: openai.OpenAIRealtime(settings)
    except RealtimeError as exc:
        raise RealtimeUnavailable(str(exc)) from None


class RealtimeFactory:
    def __init__(
        self, config: Config, *, consult: bool, env: Mapping[str, str] | None = None
    ) -> None:
        """`consult`: a responder is configured, so the consult tool can be offered (the
        config check refuses an explicit toolPolicy without one)."""
        self.config = config
        realtime = config.realtime
        self.name = realtime.provider or "openai"
        self._new_model = _model_builder(config, os.environ if env is None else env)
        self.consult = consult and consult_enabled(realtime.tool_policy)
        custom = tuple(
            ToolSpec(tool.name, tool.description, tool.parameters.model_dump(exclude_none=True))
            for tool in realtime.tools
        )
        try:
            self.tools = tool_specs(realtime.tool_policy if self.consult else "none", custom)
        except RealtimeError as exc:
            raise RealtimeUnavailable(str(exc)) from None
        self.custom_tools = custom

    def new_model(self) -> RealtimeModel:
        """A new, unconnected session with the configured service."""
        return self._new_model()

    def setup(self, record: CallRecord | None) -> SessionSetup:
        """What the call's session opens with: the persona (realtime.instructions, else the
        call's response system prompt) and the rules, the tools, the line's language."""
        route = None
        if record is not None and record.direction == Direction.INBOUND:
            route = screened_route(self.config, record)
        prompt = (route and route.response_system_prompt) or self.config.response_system_prompt
        # A number's own persona (its realtime.instructions, else its prompt) beats the top's.
        own = route.realtime if route is not None else None
        persona = own.instructions if own is not None else None
        if persona is None and not (route and route.response_system_prompt):
            persona = self.config.realtime.instructions
        text = build_instructions(
            instructions=persona,
            system_prompt=prompt,
            consult=self.consult,
            consult_policy=self.config.realtime.consult_policy,
        )
        given = own_language(record.metadata) if record is not None else None
        language = given or (route and route.language) or None
        answer_in = instructions_line(language or self.config.language)
        text = f"{text}\n\n{answer_in}" if answer_in else text
        return SessionSetup(
            instructions=text,
            tools=self.tools,
            voice=own.voice if own is not None else None,
            language=language,
        )

    def bridge_settings(self) -> BridgeSettings:
        """The bridge's timers, tools and lines, from the realtime block."""
        realtime = self.config.realtime
        idle_ms = realtime.idle_hangup_ms
        return replace(
            BridgeSettings(),
            silence_timeout_s=realtime.silence_timeout_ms / 1000,
            idle_hangup_s=idle_ms / 1000 if idle_ms is not None else None,
            consult_filler_s=realtime.consult_filler_ms / 1000,
            tool_policy=realtime.tool_policy if self.consult else "none",
            tools=self.custom_tools,
        )
