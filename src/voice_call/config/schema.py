"""The settings model: ``Config`` and its sections, with their defaults.

camelCase in the file, snake_case in Python; unknown keys are errors. Validators that pydantic
must run on a model (a store given as a path string, a check between two fields of one
section, the derived realtime path) stay on the model; checks that span sections or depend on
the environment are in ``checks.py``.
"""

from __future__ import annotations

import json
import os
import re
import typing
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    model_validator,
)

from voice_call.config.fields import (
    Bool,
    E164Number,
    Int,
    OptE164,
    OptHttpUrl,
    OptStr,
    UrlPath,
    field_error,
)
from voice_call.config.realtime import RealtimeConfig, RealtimeName
from voice_call.config.section import Section
from voice_call.config.streaming import SttName, SttProviders
from voice_call.config.tts import TtsConfig
from voice_call.models import Mode

ProviderName = Literal["twilio", "telnyx", "plivo", "mock"]
PROVIDERS: tuple[str, ...] = typing.get_args(ProviderName)
CARRIERS = ("twilio", "telnyx", "plivo")


class _Section(Section):
    """camelCase in the file, snake_case in Python; unknown keys are errors (section.py: shared
    with the sections in tts.py and streaming.py, which schema.py imports)."""


class NumberRealtime(_Section):
    """A number's realtime voice (``numbers["+1555…"].realtime``): what its calls' model session
    opens with. Realtime is on or off for the whole service (``realtime.enabled``) and uses one
    service, so ``enabled`` may only repeat ``true`` and ``provider`` the top level's
    (config/checks.py refuses the rest)."""

    enabled: Bool | None = None
    provider: RealtimeName | None = None
    instructions: OptStr = None  # replaces realtime.instructions for this number's calls
    voice: OptStr = None  # the model's voice for this number's calls


class NumberRoute(_Section):
    """Overrides for inbound calls to one of our numbers (``numbers["+1555…"]``)."""

    inbound_greeting: OptStr = None
    voice: OptStr = None  # carrier voice for this line (overrides the provider block's)
    language: OptStr = None  # e.g. "en-GB"
    tts: TtsConfig | None = None
    agent_id: OptStr = None
    response_model: OptStr = None
    response_system_prompt: OptStr = None
    response_timeout_ms: Int | None = Field(default=None, gt=0)
    # a whole responder block for this number's calls (keys left out take their defaults)
    responder: ResponderConfig | None = None
    realtime: NumberRealtime | None = None
    # who may call this number: replaces the top-level inboundPolicy / allowFrom for it
    inbound_policy: (
        Annotated[Literal["disabled", "allowlist", "open"], BeforeValidator(_not_pairing)] | None
    ) = None
    allow_from: list[E164Number] | None = None


# Premium-rate ranges a dial is refused for unless the operator changes the list.
DEFAULT_DENY_PREFIXES = ("+1900", "+1976")


def _deny_prefix(value: str) -> str:
    if not re.fullmatch(r"\+[0-9]{1,15}", value):
        raise ValueError(
            f"{json.dumps(value, ensure_ascii=False)} is not a number prefix"
            ' — write + and ASCII digits only, e.g. "+1900"'
        )
    return value


class AmdConfig(_Section):
    """Answering-machine detection on outbound calls (the carrier's own, asynchronous)."""

    enabled: Bool = False
    # detect: a machine ends the call as voicemail; voicemail-drop: leave `message` after the beep
    mode: Literal["detect", "voicemail-drop"] = "detect"
    # how long the carrier may listen before it says "unknown" (then: treated as a human)
    timeout_ms: Int = Field(default=30_000, ge=2_000, le=60_000)
    message: OptStr = None  # the voicemail's words; None: the call's own message


class OutboundConfig(_Section):
    default_mode: Mode = Mode.NOTIFY
    amd: AmdConfig = Field(default_factory=AmdConfig)
    notify_hangup_delay_sec: Int = Field(default=3, ge=0)
    # a dial to a number starting with one of these is refused before anything is stored
    deny_prefixes: list[Annotated[str, AfterValidator(_deny_prefix)]] = Field(
        default_factory=lambda: list(DEFAULT_DENY_PREFIXES)
    )


class RecordingConfig(_Section):
    """Call recording: the carrier records each answered call (its URL, duration and status
    land on the record); streamed and realtime calls also get a local dual-channel WAV (left
    the caller, right the bot) of exactly what was heard each way, in the state folder."""

    enabled: Bool = False
    channels: Literal["mono", "dual"] = "dual"  # dual: each party on its own channel
    announce: OptStr = None  # a consent line said before the recording starts
    download: Bool = False  # fetch the carrier's file into the state folder


class ServeConfig(_Section):
    port: Int = Field(default=3334, ge=0, le=65535)  # 0 = any free port
    bind: str = Field(default="127.0.0.1", min_length=1)
    path: UrlPath = "/voice/webhook"
    # a request head (request line + headers) must arrive whole within this, counted from the
    # connection opening or the previous response; then 408 and close
    head_timeout_ms: Int = Field(default=10_000, ge=100, le=300_000)
    # open HTTP + WebSocket connections; beyond it a new one gets 503 and is closed at once
    max_connections: Int = Field(default=1000, ge=1, le=100_000)


class TailscaleConfig(_Section):
    mode: Literal["off", "serve", "funnel"] = "off"
    port: Int = Field(default=443, ge=1, le=65535)
    path: UrlPath = "/voice/webhook"

    @model_validator(mode="after")
    def _funnel_port(self) -> TailscaleConfig:
        if self.mode == "funnel" and self.port not in (443, 8443, 10000):
            raise field_error(
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
    # the speech-to-text service (config/streaming.py STT_PROVIDERS); None = "openai"
    provider: SttName | None = None
    stream_path: UrlPath = "/voice/stream"
    providers: SttProviders = Field(default_factory=SttProviders)
    # engines that take over, in order, when the provider fails at connect or mid-call
    fallback: list[SttName] | None = None
    pre_start_timeout_ms: Int = Field(default=5000, gt=0)
    max_pending_connections: Int = Field(default=32, ge=1)
    max_pending_connections_per_ip: Int = Field(default=4, ge=1)
    max_connections: Int = Field(default=128, ge=1)
    token_secret: OptStr = None  # signs media-stream tokens; else a random per-process key
    token_ttl_seconds: Int = Field(default=120, gt=0)  # minted at dial/answer, used on connect
    drop_grace_ms: Int = Field(default=2000, ge=0)  # a dropped stream ends the call after this
    protect_greeting: Bool = True  # the opening greeting ignores (echo) barge-in

    @model_validator(mode="after")
    def _fallback_once_each(self) -> StreamingConfig:
        chain = self.fallback or []
        for index, name in enumerate(chain):
            if name in chain[:index] or name == (self.provider or "openai"):
                raise field_error(
                    "fallback",
                    f'names "{name}" twice (the provider comes first by itself)'
                    " — list each speech-to-text engine once",
                )
        return self


REDIS_SCHEMES = ("redis", "rediss", "unix")
_REDIS_EXAMPLE = '"redis://localhost:6379/0"'
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _redis_url_problem(url: str) -> str | None:
    """Why `url` cannot name a Redis server, or None when it can."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return f"is not a valid URL ({exc}) — e.g. {_REDIS_EXAMPLE}"
    if parts.scheme not in REDIS_SCHEMES:
        return (
            "must be a redis://, rediss:// or unix:// URL — e.g. "
            f'{_REDIS_EXAMPLE}, "rediss://:password@host:6380/0" or "unix:///run/redis.sock"'
        )
    if parts.scheme == "unix" and not parts.path:
        return 'names no socket file — e.g. "unix:///run/redis/redis.sock"'
    return None


class StoreConfig(_Section):
    """Where call records live. The seed gives a path string; we also take an object."""

    backend: Literal["sqlite", "redis"] = "sqlite"
    path: OptStr = None  # SQLite: None = the store's default file under state_home()
    url: OptStr = None  # Redis: the server (redis://, rediss:// or unix://)
    # Redis: every key starts with "<prefix>:", so deployments can share one Redis
    prefix: str = "voicecall"
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
        if self.backend == "redis":
            self._check_redis()
            return self
        if self.url is not None:
            raise field_error(
                "url",
                'only the Redis store uses it — set backend: "redis" to use Redis, or remove it'
                " (store.path picks the SQLite file)",
            )
        if "prefix" in self.model_fields_set:
            raise field_error(
                "prefix", 'only the Redis store uses it — remove it, or set backend: "redis"'
            )
        return self

    def _check_redis(self) -> None:
        if self.url is None:
            raise field_error(
                "url",
                f'required with backend "redis" — set it to the Redis server, e.g.'
                f" {_REDIS_EXAMPLE}",
            )
        problem = _redis_url_problem(self.url)
        if problem is not None:
            raise field_error("url", problem)
        if self.path is not None:
            raise field_error(
                "path",
                "only the SQLite store uses it — remove it (store.url names the Redis server)",
            )
        if not _PREFIX.fullmatch(self.prefix):
            raise field_error(
                "prefix",
                "may hold only letters, digits, '_', '.' and '-' (1 to 64 of them) — e.g."
                ' "voicecall-prod"',
            )


# `apiBaseUrl` (in each carrier block) points a provider at another REST host (a regional
# edge, or `voicecall sim`).


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
    # V2 signs neither the query nor the body: even when allowed, only a callback that applies
    # nothing passes with it (providers/plivo/webhooks.py).
    allow_v2_signatures: Bool = False


def _default_replies() -> list[str]:
    return [
        "Hi, yes, this is Sam.",
        "Sure, Tuesday at three works for me.",
        "No, that's everything. Thanks, bye!",
    ]


class MockConfig(_Section):
    """The simulated callee the mock provider plays."""

    answer_delay_ms: Int = Field(default=300, ge=0)
    # machine / fax: answers as an answering machine (a greeting of greetingMs, then the beep)
    # or a fax, for outbound.amd
    outcome: Literal["answer", "busy", "no-answer", "voicemail", "failed", "machine", "fax"] = (
        "answer"
    )
    greeting_ms: Int = Field(default=3000, ge=0, le=60_000)
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
            raise field_error(
                "url",
                'required when provider is "hook" — set it to the URL that answers each turn',
            )
        return self


def _not_pairing(value: Any) -> Any:
    if value == "pairing":
        raise ValueError(
            '"pairing" is not available in this version — use "allowlist" and list the callers'
            ' to let in under allowFrom (e.g. allowFrom: ["+15550001234"])'
        )
    return value


class Config(_Section):
    enabled: Bool = True
    provider: ProviderName = "mock"
    from_number: OptE164 = None
    to_number: OptE164 = None
    inbound_policy: Annotated[
        Literal["disabled", "allowlist", "open"], BeforeValidator(_not_pairing)
    ] = "disabled"
    allow_from: list[E164Number] = Field(default_factory=list)
    inbound_greeting: OptStr = None
    # the language calls are held in (languages.py): numbers[…].language and a call's own win
    language: str = Field(default="en-US", min_length=2)
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
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    session_scope: Literal["per-phone", "per-call", "main"] = "per-phone"
    public_url: OptHttpUrl = None
    skip_signature_verification: Bool = False
    tts: TtsConfig = Field(default_factory=TtsConfig)
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
    deepgram_api_key: OptStr = None
    cartesia_api_key: OptStr = None
    mock: MockConfig = Field(default_factory=MockConfig)
    responder: ResponderConfig = Field(default_factory=ResponderConfig)

    _warnings: list[str] = PrivateAttr(default_factory=list)
    _core_tts: dict[str, Any] = PrivateAttr(default_factory=dict)
    _env_values: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def core_tts(self) -> dict[str, Any]:
        """OpenClaw's global `messages.tts`, which our `tts` deep-merges over (as the seed
        plugin does)."""
        return self._core_tts

    @property
    def env_values(self) -> dict[str, str]:
        """Each value taken from a ``${NAME}`` or env secret reference → ``NAME`` (redaction
        shows the reference instead of the value)."""
        return self._env_values

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
