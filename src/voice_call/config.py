"""Settings: a JSON5 file in the seed plugin's shape, env fallbacks, validation and defaults.

Pipeline (``load_config`` → ``parse_config``): read JSON5 → unwrap an OpenClaw config file
(``plugins.entries["voice-call"].config``) → migrate legacy keys (with warnings) → fill secrets
from the environment where the file leaves them out → validate. Validation reports *every*
problem at once, each as ``path: message — fix`` with the camelCase path as written in the file.

Imports nothing of ours except ``voice_call.models``.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import json5
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, PydanticCustomError

from voice_call.models import E164, Mode

Loc = tuple[str | int, ...]
ProviderName = Literal["twilio", "telnyx", "plivo", "mock"]
PROVIDERS: tuple[str, ...] = typing.get_args(ProviderName)
CARRIERS = ("twilio", "telnyx", "plivo")


class ConfigError(Exception):
    """Every problem found in a config, each formatted ``path: message — fix``."""

    def __init__(self, errors: list[str] | str, source: Path | None = None) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.source = source  # the file the errors are about, when loaded from one
        super().__init__("\n".join(self.errors))


# --- field types ---------------------------------------------------------------------------

# Strict: JSON5 has real numbers and booleans, so "3334" or "true" in quotes is a mistake to
# report, not something to coerce silently.
Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]

_PHONE_SEPARATORS = re.compile(r"[\s\-().]")


def _blank_to_none(value: Any) -> Any:
    """An empty string means "not set", so it gets the same "required" message as a gap."""
    return None if isinstance(value, str) and not value.strip() else value


def _e164(value: str) -> str:
    # Accept the usual visual separators ("+1 (555) 000-1234") and store the compact form.
    compact = _PHONE_SEPARATORS.sub("", value)
    if not E164.fullmatch(compact):
        raise ValueError(
            f"{json.dumps(value, ensure_ascii=False)} is not an E.164 phone number"
            ' — write + country code and number, e.g. "+15550001234"'
        )
    return compact


def _url_path(value: str) -> str:
    """One leading slash, no trailing slash: "voice/webhook/" → "/voice/webhook"."""
    path = "/" + value.strip().strip("/")
    if any(ch.isspace() or ch in "?#" for ch in path):
        raise ValueError(
            f"{json.dumps(value, ensure_ascii=False)} is not a URL path"
            ' — use a plain path such as "/voice/webhook" (no spaces, "?" or "#")'
        )
    return path


def _http_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{json.dumps(value, ensure_ascii=False)} is not an http(s) URL"
            ' — write the full URL, e.g. "https://example.ngrok.app/voice/webhook"'
        )
    return value.strip()


OptStr = Annotated[str | None, BeforeValidator(_blank_to_none)]
E164Number = Annotated[str, AfterValidator(_e164)]
OptE164 = Annotated[E164Number | None, BeforeValidator(_blank_to_none)]
UrlPath = Annotated[str, AfterValidator(_url_path)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]


def _field_error(field: str, message: str) -> PydanticCustomError:
    """A cross-field problem inside one section, reported at ``section.field``."""
    return PydanticCustomError("config_field", "{message}", {"field": field, "message": message})


# --- sections ------------------------------------------------------------------------------


class _Section(BaseModel):
    """camelCase in the file, snake_case in Python; unknown keys are errors."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class NumberRoute(_Section):
    """Overrides for inbound calls to one of our numbers (``numbers["+1555…"]``)."""

    inbound_greeting: OptStr = None
    voice: OptStr = None  # carrier voice for this line (overrides the provider block's)
    language: OptStr = None  # e.g. "en-GB"
    tts: dict[str, Any] | None = None
    agent_id: OptStr = None
    response_model: OptStr = None
    response_system_prompt: OptStr = None
    response_timeout_ms: Int | None = Field(default=None, gt=0)


class OutboundConfig(_Section):
    default_mode: Mode = Mode.NOTIFY
    notify_hangup_delay_sec: Int = Field(default=3, ge=0)


class ServeConfig(_Section):
    port: Int = Field(default=3334, ge=0, le=65535)  # 0 = any free port
    bind: str = Field(default="127.0.0.1", min_length=1)
    path: UrlPath = "/voice/webhook"


class TailscaleConfig(_Section):
    mode: Literal["off", "serve", "funnel"] = "off"
    port: Int = Field(default=443, ge=1, le=65535)
    path: UrlPath = "/voice/webhook"

    @model_validator(mode="after")
    def _funnel_port(self) -> TailscaleConfig:
        if self.mode == "funnel" and self.port not in (443, 8443, 10000):
            raise _field_error(
                "port",
                f"Tailscale Funnel only serves ports 443, 8443 and 10000, got {self.port}"
                " — use one of those",
            )
        return self


class TunnelConfig(_Section):
    provider: Literal["none", "ngrok", "tailscale-serve", "tailscale-funnel"] = "none"
    ngrok_auth_token: OptStr = None
    ngrok_domain: OptStr = None
    allow_ngrok_free_tier_loopback_bypass: Bool = False


class WebhookSecurityConfig(_Section):
    allowed_hosts: list[str] = Field(default_factory=list)
    trust_forwarding_headers: Bool = False
    trusted_proxy_ips: list[str] = Field(default_factory=list, alias="trustedProxyIPs")
    # webhook requests in progress per client (429 beyond); behind a trusted proxy the
    # client is the forwarded-for address, not the proxy
    max_in_flight_per_client: Int = Field(default=8, ge=1, le=10_000)


class StreamingConfig(_Section):
    enabled: Bool = False
    provider: OptStr = None
    stream_path: UrlPath = "/voice/stream"
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    pre_start_timeout_ms: Int = Field(default=5000, gt=0)
    max_pending_connections: Int = Field(default=32, ge=1)
    max_pending_connections_per_ip: Int = Field(default=4, ge=1)
    max_connections: Int = Field(default=128, ge=1)
    token_secret: OptStr = None  # signs media-stream tokens; else a random per-process key
    token_ttl_seconds: Int = Field(default=120, gt=0)  # minted at dial/answer, used on connect
    drop_grace_ms: Int = Field(default=2000, ge=0)  # a dropped stream ends the call after this
    protect_greeting: Bool = True  # the opening greeting ignores (echo) barge-in


class RealtimeConfig(_Section):
    # The realtime voice bridge has many provider-owned knobs (instructions, toolPolicy, tools,
    # providers, …); keep them as given rather than chase the seed's schema.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    enabled: Bool = False
    provider: OptStr = None
    stream_path: Annotated[UrlPath | None, BeforeValidator(_blank_to_none)] = None


class StoreConfig(_Section):
    """Where call records live. The seed gives a path string; we also take an object."""

    backend: Literal["sqlite", "redis"] = "sqlite"
    path: OptStr = None  # None = the store's default file under state_home()
    url: OptStr = None
    retention_days: Int = Field(default=30, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _from_path_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"backend": "sqlite", "path": data}
        return data

    @model_validator(mode="after")
    def _check(self) -> StoreConfig:
        if self.path is not None:
            self.path = os.path.expanduser(self.path)
        if self.backend == "redis" and self.url is None:
            raise _field_error(
                "url",
                'required when backend is "redis" — set it, e.g. "redis://localhost:6379/0"',
            )
        return self


# `apiBaseUrl` points a provider at another REST host (a regional edge, or `voicecall sim`).
OptHttpUrl = Annotated[HttpUrl | None, BeforeValidator(_blank_to_none)]


class TwilioConfig(_Section):
    account_sid: OptStr = None
    auth_token: OptStr = None
    region: Literal["us1", "ie1", "au1"] = "us1"
    api_base_url: OptHttpUrl = None
    voice: OptStr = None  # Polly/Google voice, or an OpenAI voice name mapped to Polly
    language: OptStr = None  # e.g. "en-US"


class TelnyxConfig(_Section):
    api_key: OptStr = None
    connection_id: OptStr = None
    public_key: OptStr = None
    api_base_url: OptHttpUrl = None
    voice: OptStr = None
    language: OptStr = None


class PlivoConfig(_Section):
    auth_id: OptStr = None
    auth_token: OptStr = None
    api_base_url: OptHttpUrl = None
    voice: OptStr = None
    language: OptStr = None


def _default_replies() -> list[str]:
    return [
        "Hi, yes, this is Sam.",
        "Sure, Tuesday at three works for me.",
        "No, that's everything. Thanks, bye!",
    ]


class MockConfig(_Section):
    """The simulated callee the mock provider plays."""

    answer_delay_ms: Int = Field(default=300, ge=0)
    outcome: Literal["answer", "busy", "no-answer", "voicemail", "failed"] = "answer"
    replies: list[str] = Field(default_factory=_default_replies)
    reply_delay_ms: Int = Field(default=400, ge=0)
    hangup_after_turns: Int | None = Field(default=None, ge=0)  # hang up after this many replies
    silent: Bool = False  # never replies


DEFAULT_APOLOGY = "Sorry, I'm having trouble answering right now. Could you say that again?"


class ResponderConfig(_Section):
    """The auto-responder. The model, prompt and timeout are the seed's top-level
    `responseModel`, `responseSystemPrompt` and `responseTimeoutMs` (per-number overrides too)."""

    provider: Literal["none", "echo", "openai", "hook"] = "none"
    base_url: OptHttpUrl = None  # any OpenAI-compatible server (Ollama, vLLM, ...)
    api_key: OptStr = None  # else openaiApiKey / OPENAI_API_KEY
    url: OptHttpUrl = None  # the HTTP hook's URL (provider "hook")
    headers: dict[str, str] = Field(default_factory=dict)  # sent to the hook (e.g. auth)
    apology_text: str = Field(default=DEFAULT_APOLOGY, min_length=1)
    max_history_messages: Int = Field(default=40, ge=0)  # earlier calls' lines (sessionScope)

    @model_validator(mode="after")
    def _hook_needs_url(self) -> ResponderConfig:
        if self.provider == "hook" and self.url is None:
            raise _field_error(
                "url",
                'required when provider is "hook" — set it to the URL that answers each turn',
            )
        return self


class Config(_Section):
    enabled: Bool = True
    provider: ProviderName = "mock"
    from_number: OptE164 = None
    to_number: OptE164 = None
    inbound_policy: Literal["disabled", "allowlist", "pairing", "open"] = "disabled"
    allow_from: list[E164Number] = Field(default_factory=list)
    inbound_greeting: OptStr = None
    numbers: dict[E164Number, NumberRoute] = Field(default_factory=dict)
    outbound: OutboundConfig = Field(default_factory=OutboundConfig)
    max_duration_seconds: Int = Field(default=300, gt=0)
    stale_call_reaper_seconds: Int = Field(default=120, ge=0)  # 0 disables the reaper
    silence_timeout_ms: Int = Field(default=800, gt=0)
    transcript_timeout_ms: Int = Field(default=180000, gt=0)
    ring_timeout_ms: Int = Field(default=30000, gt=0)
    max_concurrent_calls: Int = Field(default=1, ge=1)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    tailscale: TailscaleConfig = Field(default_factory=TailscaleConfig)
    tunnel: TunnelConfig = Field(default_factory=TunnelConfig)
    webhook_security: WebhookSecurityConfig = Field(default_factory=WebhookSecurityConfig)
    streaming: StreamingConfig = Field(default_factory=StreamingConfig)
    realtime: RealtimeConfig = Field(default_factory=RealtimeConfig)
    session_scope: Literal["per-phone", "per-call", "main"] = "per-phone"
    public_url: Annotated[HttpUrl | None, BeforeValidator(_blank_to_none)] = None
    skip_signature_verification: Bool = False
    tts: dict[str, Any] = Field(default_factory=dict)
    store: StoreConfig = Field(default_factory=StoreConfig)
    agent_id: str = Field(default="main", min_length=1)
    response_model: OptStr = None
    response_system_prompt: OptStr = None
    response_timeout_ms: Int = Field(default=30000, gt=0)
    twilio: TwilioConfig | None = None
    telnyx: TelnyxConfig | None = None
    plivo: PlivoConfig | None = None
    # ours
    openai_api_key: OptStr = None
    elevenlabs_api_key: OptStr = None
    mock: MockConfig = Field(default_factory=MockConfig)
    responder: ResponderConfig = Field(default_factory=ResponderConfig)

    _warnings: list[str] = PrivateAttr(default_factory=list)
    _core_tts: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def core_tts(self) -> dict[str, Any]:
        """OpenClaw's global `messages.tts`, which our `tts` deep-merges over (seed README)."""
        return self._core_tts

    @property
    def warnings(self) -> list[str]:
        """Legacy keys that were migrated; never part of a dump."""
        return self._warnings

    @model_validator(mode="after")
    def _derive_realtime_path(self) -> Config:
        # Seed rule: serve.path with its trailing "/webhook" replaced by "/stream/realtime".
        if self.realtime.stream_path is None:
            base = self.serve.path.removesuffix("/webhook").rstrip("/")
            self.realtime.stream_path = f"{base}/stream/realtime"
        return self


# --- locations -----------------------------------------------------------------------------

OPENCLAW_ENTRY: Loc = ("plugins", "entries", "voice-call", "config")
_IDENT = re.compile(r"[A-Za-z_$][\w$]*")


def format_path(loc: Loc) -> str:
    """``("numbers", "+1555", "tts")`` → ``numbers["+1555"].tts``; JSON5-ish, as in the file."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out or "(top level)"


def _get(section: Any, key: str, default: Any = None) -> Any:
    """A raw value by its camelCase key, or by its snake_case name (both are accepted)."""
    if not isinstance(section, dict):
        return default
    for name in (key, _snake(key)):
        if section.get(name) is not None:
            return section[name]
    return default


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# --- OpenClaw wrapper and legacy keys --------------------------------------------------------


def _unwrap_openclaw(data: dict[str, Any]) -> tuple[dict[str, Any], Loc]:
    """Our section of an OpenClaw config file, and where it sits in that file."""
    plugins = data.get("plugins")
    if not isinstance(plugins, dict):
        return data, ()
    entries = plugins.get("entries")
    entry = entries.get("voice-call") if isinstance(entries, dict) else None
    where = format_path(OPENCLAW_ENTRY[:3])
    if not isinstance(entry, dict):
        raise ConfigError(
            f"{where}: not found — this looks like an OpenClaw config file;"
            ' add a "voice-call" entry with a "config" object'
        )
    section = entry.get("config", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{where}.config: expected an object — write it as {{ ... }}")
    if entry.get("enabled") is False:  # the plugin switch turns the whole thing off
        section = {**section, "enabled": False}
    return section, OPENCLAW_ENTRY


Note = Callable[[Loc, str], None]

_LEGACY_STREAMING = {
    "openaiApiKey": "apiKey",
    "sttModel": "model",
    "silenceDurationMs": "silenceDurationMs",
    "vadThreshold": "vadThreshold",
}
_LEGACY_TTS_PROVIDERS = ("openai", "elevenlabs", "edge", "typecast")


def _migrate(raw: dict[str, Any], note: Note) -> None:
    """Rewrite legacy keys in place (anatomy §2.4), noting each with its replacement."""
    if raw.get("provider") == "log":
        raw["provider"] = "mock"
        note(("provider",), '"log" is deprecated — use "mock" (migrated for now)')
    twilio = raw.get("twilio")
    if isinstance(twilio, dict) and "from" in twilio:
        legacy = twilio.pop("from")
        if _missing(_get(raw, "fromNumber")):
            raw["fromNumber"] = legacy
            note(("twilio", "from"), "deprecated — use top-level fromNumber (migrated for now)")
        else:
            note(("twilio", "from"), "deprecated and ignored because fromNumber is set — remove it")
    if isinstance(raw.get("streaming"), dict):
        _migrate_streaming(raw["streaming"], note)
    realtime = raw.get("realtime")
    context = realtime.get("agentContext") if isinstance(realtime, dict) else None
    if isinstance(context, dict) and context.pop("includeSystemPrompt", None) is not None:
        note(("realtime", "agentContext", "includeSystemPrompt"), "no longer used — remove it")
    if isinstance(raw.get("tts"), dict):
        _migrate_tts(raw["tts"], ("tts",), note)
    numbers = raw.get("numbers")
    for number, route in numbers.items() if isinstance(numbers, dict) else ():
        if isinstance(route, dict) and isinstance(route.get("tts"), dict):
            _migrate_tts(route["tts"], ("numbers", number, "tts"), note)
    if "stt" in raw:  # early-era block, declared but never used
        raw.pop("stt")
        note(("stt",), "no longer used (speech-to-text is streaming.provider) — remove it")


def _migrate_streaming(streaming: dict[str, Any], note: Note) -> None:
    if "sttProvider" in streaming:
        value = streaming.pop("sttProvider")
        streaming.setdefault("provider", "openai" if value == "openai-realtime" else value)
        note(("streaming", "sttProvider"), "deprecated — use streaming.provider (migrated for now)")
    for old, new in _LEGACY_STREAMING.items():
        if old not in streaming:
            continue
        providers = streaming.setdefault("providers", {})
        openai = providers.setdefault("openai", {}) if isinstance(providers, dict) else None
        if not isinstance(openai, dict):
            return  # leave the old key in place; validation reports it
        openai.setdefault(new, streaming.pop(old))
        note(
            ("streaming", old),
            f"deprecated — use streaming.providers.openai.{new} (migrated for now)",
        )


def _migrate_tts(tts: dict[str, Any], loc: Loc, note: Note) -> None:
    for name in _LEGACY_TTS_PROVIDERS:
        if not isinstance(tts.get(name), dict):
            continue
        providers = tts.setdefault("providers", {})
        if not isinstance(providers, dict):
            return
        providers.setdefault(name, tts.pop(name))
        note(
            (*loc, name),
            f"deprecated — use {format_path((*loc, 'providers', name))} (migrated for now)",
        )


# --- environment fallbacks -------------------------------------------------------------------

_PROVIDER_ENV = {
    "twilio": {"accountSid": "TWILIO_ACCOUNT_SID", "authToken": "TWILIO_AUTH_TOKEN"},
    "telnyx": {
        "apiKey": "TELNYX_API_KEY",
        "connectionId": "TELNYX_CONNECTION_ID",
        "publicKey": "TELNYX_PUBLIC_KEY",
    },
    "plivo": {"authId": "PLIVO_AUTH_ID", "authToken": "PLIVO_AUTH_TOKEN"},
}
_TUNNEL_ENV = {"ngrokAuthToken": "NGROK_AUTHTOKEN", "ngrokDomain": "NGROK_DOMAIN"}
_TOP_ENV = {"openaiApiKey": "OPENAI_API_KEY", "elevenlabsApiKey": "ELEVENLABS_API_KEY"}


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[Loc, str]:
    """Fill keys the file leaves out from the environment; returns which key came from where."""
    sources: dict[Loc, str] = {}

    def fill(section: Any, loc: Loc, table: Mapping[str, str]) -> None:
        for key, var in table.items():
            value = (env.get(var) or "").strip()
            if value and isinstance(section, dict) and _missing(_get(section, key)):
                section[key] = value
                sources[(*loc, key)] = var

    def section(name: str, wanted: bool, table: Mapping[str, str]) -> Any:
        # Create a missing block only when it is needed and the env has something for it,
        # so a mock setup does not grow a twilio block just because TWILIO_* is exported.
        if raw.get(name) is None and wanted and any(env.get(v) for v in table.values()):
            raw[name] = {}
        return raw.get(name)

    provider = _get(raw, "provider", "mock")
    for name, table in _PROVIDER_ENV.items():
        fill(section(name, provider == name, table), (name,), table)
    if provider == "twilio":
        fill(raw, (), {"fromNumber": "TWILIO_FROM_NUMBER"})
    fill(section("tunnel", True, _TUNNEL_ENV), ("tunnel",), _TUNNEL_ENV)
    fill(raw, (), _TOP_ENV)
    return sources


# --- cross-field checks (anatomy §2.2) ---------------------------------------------------------


def _cross_check(raw: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Problems between fields, found on the raw dict so they add to any type errors."""
    if _get(raw, "enabled", True) is False:
        return []
    provider = _get(raw, "provider", "mock")
    known = provider in PROVIDERS
    problems: list[tuple[Loc, str]] = []
    if provider in CARRIERS and _missing(_get(raw, "fromNumber")):
        hint = " or TWILIO_FROM_NUMBER" if provider == "twilio" else ""
        problems.append(
            (
                ("fromNumber",),
                f'required when provider is "{provider}" — set it in the config{hint}',
            )
        )
    if provider in CARRIERS:
        problems += _credential_problems(raw, provider)
    realtime_on = _get(_get(raw, "realtime"), "enabled") is True
    streaming_on = _get(_get(raw, "streaming"), "enabled") is True
    if realtime_on and _get(raw, "inboundPolicy", "disabled") == "disabled":
        problems.append(
            (
                ("inboundPolicy",),
                'must not be "disabled" when realtime.enabled is true'
                ' — set it to "allowlist", "pairing" or "open", or turn realtime off',
            )
        )
    if realtime_on and streaming_on:
        problems.append(
            (
                ("streaming", "enabled"),
                "cannot be true together with realtime.enabled — turn one of them off",
            )
        )
    if realtime_on and known and provider not in ("twilio", "telnyx", "mock"):
        problems.append(
            (
                ("realtime", "enabled"),
                f'only works with provider "twilio", "telnyx" or "mock" (provider is "{provider}")'
                " — set realtime.enabled to false or switch provider",
            )
        )
    return problems


def _credential_problems(raw: dict[str, Any], provider: str) -> list[tuple[Loc, str]]:
    block = raw.get(provider)
    if block is not None and not isinstance(block, dict):
        return []  # wrong type: validation already says so
    skip_signatures = _get(raw, "skipSignatureVerification") is True
    problems: list[tuple[Loc, str]] = []
    for key, var in _PROVIDER_ENV[provider].items():
        if not _missing(_get(block, key)):
            continue
        if key == "publicKey" and skip_signatures:
            continue
        fix = f"set it in the config or {var}"
        if key == "publicKey":
            fix += " (or skipSignatureVerification: true, for local development only)"
        problems.append(((provider, key), f'required when provider is "{provider}" — {fix}'))
    return problems


# --- pydantic errors, made friendly -------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _expected(err: ErrorDetails) -> str:
    return str(err.get("ctx", {}).get("expected", "")).replace("'", '"')


def _choice(err: ErrorDetails) -> str:
    """For a misspelt choice ("twillio"), name the likely one; else list them all."""
    choices = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
    given = err["input"]
    hint = _closest(given, choices) if isinstance(given, str) else None
    return f"did you mean {json.dumps(hint)}?" if hint else "use one of those"


_MESSAGES: dict[str, Callable[[ErrorDetails], str]] = {
    "missing": lambda e: "required — add it",
    "int_type": lambda e: (
        f"expected a whole number, got {_show(e['input'])} — write a number without quotes"
    ),
    "bool_type": lambda e: (
        f"expected true or false, got {_show(e['input'])} — write true or false without quotes"
    ),
    "string_type": lambda e: f"expected a string, got {_show(e['input'])} — put it in quotes",
    "list_type": lambda e: f"expected a list, got {_show(e['input'])} — write it as [ ... ]",
    "dict_type": lambda e: f"expected an object, got {_show(e['input'])} — write it as {{ ... }}",
    "model_type": lambda e: f"expected an object, got {_show(e['input'])} — write it as {{ ... }}",
    "literal_error": lambda e: (
        f"must be one of {_expected(e)}, got {_show(e['input'])} — {_choice(e)}"
    ),
    "enum": lambda e: f"must be one of {_expected(e)}, got {_show(e['input'])} — {_choice(e)}",
    "greater_than": lambda e: (
        f"must be greater than {e['ctx']['gt']}, got {_show(e['input'])} — use a larger number"
    ),
    "greater_than_equal": lambda e: (
        f"must be at least {e['ctx']['ge']}, got {_show(e['input'])} — use a larger number"
    ),
    "less_than_equal": lambda e: (
        f"must be at most {e['ctx']['le']}, got {_show(e['input'])} — use a smaller number"
    ),
    "string_too_short": lambda e: "must not be empty — set a value or remove the key",
}


def _friendly(err: ErrorDetails) -> tuple[Loc, str]:
    """A pydantic error as (where, "message — fix")."""
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx", {})
    if kind == "config_field":
        loc = (*loc, ctx["field"])
        message = str(ctx["message"])
    elif kind == "value_error":
        message = str(ctx.get("error", err["msg"]))
    elif kind == "extra_forbidden":
        message = _unknown_key(loc)
    elif kind in _MESSAGES:
        message = _MESSAGES[kind](err)
    else:
        message = f"{err['msg']} — check the value"
    if loc and loc[-1] == "[key]":  # a dict key itself is invalid, e.g. numbers["555"]
        loc = loc[:-1]
    return loc, message


def _file_order(raw: Any, loc: Loc) -> tuple[int, ...]:
    """Where ``loc`` sits in the file, so errors read top to bottom; absent keys go last."""
    order: list[int] = []
    for part in loc:
        if isinstance(raw, dict) and part in raw:
            order.append(list(raw).index(part))
            raw = raw[part]
        elif isinstance(raw, list) and isinstance(part, int) and part < len(raw):
            order.append(part)
            raw = raw[part]
        else:
            order.append(1 << 30)
            break
    return tuple(order)


def _unknown_key(loc: Loc) -> str:
    key = loc[-1]
    model = _model_at(loc[:-1])
    if model is None or not isinstance(key, str):
        return "unknown key — remove it or check its spelling"
    aliases = {name: field.alias or name for name, field in model.model_fields.items()}
    if key in aliases:  # snake_case name given next to its camelCase alias
        return f"given twice (also as '{aliases[key]}') — keep only one of them"
    hint = _closest(key, list(aliases.values()))
    suggestion = f" (did you mean '{hint}'?)" if hint else ""
    return f"unknown key — remove it or check its spelling{suggestion}"


def _closest(key: str, candidates: list[str]) -> str | None:
    # Compare without case or separators so "from_numbr" still finds "fromNumber".
    def fold(text: str) -> str:
        return text.lower().replace("_", "").replace("-", "")

    folded = {fold(c): c for c in candidates}
    match = difflib.get_close_matches(fold(key), list(folded), n=1, cutoff=0.6)
    return folded[match[0]] if match else None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The section model found by following ``loc`` down from ``Config``."""
    tp: Any = Config
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next(
                (f for n, f in tp.model_fields.items() if part in (n, f.alias)),
                None,
            )
            if field is None:
                return None
            tp = field.annotation
        elif typing.get_origin(tp) in (dict, list):
            tp = typing.get_args(tp)[-1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` down to ``X``."""
    while True:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is Annotated:
            tp = args[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in args if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


# --- public entry points -------------------------------------------------------------------


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def state_home(env: Mapping[str, str] | None = None) -> Path:
    """The state folder: ``$VOICECALL_HOME`` or ``~/.voicecall``."""
    env = _environ(env)
    home = env.get("VOICECALL_HOME", "").strip()
    if home:
        return Path(home).expanduser()
    user_home = env.get("HOME", "").strip()
    return (Path(user_home) if user_home else Path.home()) / ".voicecall"


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$VOICECALL_CONFIG`` or ``state_home()/config.json5``."""
    env = _environ(env)
    explicit = env.get("VOICECALL_CONFIG", "").strip()
    return Path(explicit).expanduser() if explicit else state_home(env) / "config.json5"


def parse_config(data: Any, env: Mapping[str, str] | None = None) -> Config:
    """Validate an already-parsed config (our shape or an OpenClaw file); never mutates ``data``."""
    env = _environ(env)
    if not isinstance(data, dict):
        raise ConfigError(f"(top level): expected an object, got {_show(data)} — write {{ ... }}")
    section, prefix = _unwrap_openclaw(data)
    raw = copy.deepcopy(section)
    warnings: list[str] = []
    _migrate(raw, lambda loc, msg: warnings.append(f"{format_path((*prefix, *loc))}: {msg}"))
    sources = _apply_env(raw, env)
    problems: list[tuple[Loc, str]] = []
    config: Config | None = None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems += [_friendly(err) for err in exc.errors()]
    problems += _cross_check(raw)
    if problems or config is None:
        problems.sort(key=lambda problem: _file_order(raw, problem[0]))
        raise ConfigError([_format_problem(loc, msg, prefix, sources) for loc, msg in problems])
    config._warnings = warnings
    messages = data.get("messages") if prefix else None
    core_tts = messages.get("tts") if isinstance(messages, dict) else None
    config._core_tts = copy.deepcopy(core_tts) if isinstance(core_tts, dict) else {}
    return config


def _format_problem(loc: Loc, message: str, prefix: Loc, sources: Mapping[Loc, str]) -> str:
    path = format_path((*prefix, *loc))
    if loc in sources:  # the value came from the environment, not the file
        path += f" (from {sources[loc]})"
    return f"{path}: {message}"


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the config file (JSON5). With no path and no file at the default place: defaults.

    ``$VOICECALL_CONFIG`` counts as an explicit path, so a typo there is an error rather than
    a silent fall-back to the mock provider.
    """
    env = _environ(env)
    if path is None:
        path = default_config_path(env)
        if not path.exists() and not env.get("VOICECALL_CONFIG", "").strip():
            return parse_config({}, env)
    path = Path(path).expanduser()
    data = _read_json5(path)
    try:
        return parse_config(data, env)
    except ConfigError as exc:
        raise ConfigError(exc.errors, source=path) from None


def _read_json5(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: file not found — check the path, or leave it out to use the defaults"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc}) — check the file") from None
    if not text.strip():
        return {}  # a freshly created empty file means "all defaults"
    try:
        return _pair_surrogates(json5.loads(text, allow_duplicate_keys=False))
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{path}: not valid JSON5: {exc} — fix the syntax there") from None


def _pair_surrogates(value: Any) -> Any:
    """json5 decodes an escaped pair such as "\\ud83d\\ude00" (what `json.dumps` writes for
    an emoji) into two lone surrogates: join them into the real character. A lone surrogate
    left over is not text: a ValueError (UnicodeDecodeError) the caller reports."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16")
    if isinstance(value, list):
        return [_pair_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_pair_surrogates(k): _pair_surrogates(v) for k, v in value.items()}
    return value


# --- redaction -----------------------------------------------------------------------------

_SECRET_WORDS = ("token", "apikey", "secret", "password", "passwd", "privatekey")
_SECRET_NAMES = frozenset({"key", "auth", "authorization", "credentials"})


def _is_secret_key(key: str) -> bool:
    folded = key.lower().replace("_", "").replace("-", "")
    return folded in _SECRET_NAMES or any(word in folded for word in _SECRET_WORDS)


def _mask(value: str) -> str:
    # The last 4 characters of a long secret help tell two keys apart without revealing them.
    return "***" + value[-4:] if len(value) >= 16 else "***"


def _scrub_url(value: str) -> str:
    """Hide a password inside a URL such as ``redis://:pw@host:6379/0``."""
    if "://" not in value or "@" not in value:
        return value
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return value
    if not password:
        return value
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _redact(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _mask(value) if isinstance(value, str) and _is_secret_key(key) else _redact(value)
            for key, value in node.items()
            if value is not None
        }
    if isinstance(node, list):
        return [_redact(item) for item in node]
    if isinstance(node, str):
        return _scrub_url(node)
    return node


def redacted(config: Config) -> dict[str, Any]:
    """The effective config as camelCase JSON with every secret masked and nulls left out."""
    dumped = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    result: dict[str, Any] = _redact(dumped)
    return result
