"""The responder a config asks for (`responder.provider`: echo, openai, hook or none)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from voice_call.agent.responders.base import Responder
from voice_call.agent.responders.echo import EchoResponder

if TYPE_CHECKING:
    from voice_call.config import Config


def responder_name(config: Config) -> str:
    """The responder a config chooses. `responder.provider` when written; otherwise the seed's
    way to turn auto-responses on, a top-level `responseModel`, chooses `openai` (so a config
    with `responseModel` and no `responder` block answers instead of staying silent)."""
    if "provider" in config.responder.model_fields_set or not config.response_model:
        return config.responder.provider
    return "openai"


def build_responder(spec: str | Config) -> Responder | None:
    """The responder a config asks for (`responder_name`); a bare name builds `echo`/`none`.

    Raises ConfigError when the chosen responder cannot work with the config (no API key).
    """
    name = spec if isinstance(spec, str) else responder_name(spec)
    if name == "echo":
        return EchoResponder()
    if isinstance(spec, str) or name == "none":
        return None
    # Imported on demand: the OpenAI SDK and httpx cost start-up time a config without them
    # does not need to pay.
    if name == "openai":
        from voice_call.agent.responders.openai import OpenAIResponder

        return OpenAIResponder.from_config(spec)
    if name == "hook":
        from voice_call.agent.responders.hook import HookResponder

        return HookResponder.from_config(spec)
    return None
