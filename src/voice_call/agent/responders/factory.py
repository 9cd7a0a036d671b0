"""The responder a config asks for (`responder.provider`: echo, openai, hook or none)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from voice_call.agent.responders.base import Responder
from voice_call.agent.responders.echo import EchoResponder
from voice_call.config import ConfigError
from voice_call.config.errors import format_path
from voice_call.numbers import routes

if TYPE_CHECKING:
    from voice_call.config import Config, ResponderConfig


def responder_name(config: Config) -> str:
    """The responder a config chooses. `responder.provider` when written; otherwise the seed's
    way to turn auto-responses on, a top-level `responseModel`, chooses `openai` (so a config
    with `responseModel` and no `responder` block answers instead of staying silent)."""
    if "provider" in config.responder.model_fields_set or not config.response_model:
        return config.responder.provider
    return "openai"


def build_responder(spec: str | Config) -> Responder | None:
    """The responder a config asks for (`responder_name`); a bare name builds `echo`/`none`.
    Numbers with their own `responder` block get theirs, each built once, here
    (agent/responders/routed.py picks per call).

    Raises ConfigError when a chosen responder cannot work with the config (no API key).
    """
    if isinstance(spec, str):
        return _build_one(spec)
    blocks = {key: route.responder for key, route in routes(spec) if route.responder is not None}
    default = _build_one(spec)
    if not blocks:
        return default
    from voice_call.agent.responders.routed import RoutedResponder

    by_route = {key: _route_responder(spec, key, block) for key, block in blocks.items()}
    return RoutedResponder(default, by_route)


def _route_responder(config: Config, key: str, block: ResponderConfig) -> Responder | None:
    """Route `key`'s responder: the config with its `responder` block; errors name the route."""
    try:
        return _build_one(config.model_copy(update={"responder": block}))
    except ConfigError as exc:
        where = format_path(("numbers", key, "responder"))
        raise ConfigError([f"{where}: {error}" for error in exc.errors]) from None


def _build_one(spec: str | Config) -> Responder | None:
    name = spec if isinstance(spec, str) else responder_name(spec)
    if name == "echo":
        return EchoResponder(None if isinstance(spec, str) else spec)
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
