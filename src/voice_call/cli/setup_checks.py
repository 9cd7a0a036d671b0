"""The named checks behind `voicecall setup` and `voicecall smoke`.

Each check looks at one thing and, when it fails, says how to fix it:

| id | passes when |
|---|---|
| `config` | the config file parses and validates (credentials aside) and the service is enabled |
| `provider-credentials` | the carrier's keys and `fromNumber` are set (config or environment) |
| `webhook-exposure` | a real carrier would be given a URL it can reach (publicUrl, a tunnel, …) |
| `webhook-reachable` | an HTTP request to that public URL, from this machine, reaches our server |
| `speech-keys` | streaming has its speech keys and engines; realtime voice, its model's key |
| `responder` | inbound callers get an auto-responder, and the chosen one can be built |

So that each check fails on its own broken input only, missing credentials are told apart
from other config errors by validating twice: as written, and with placeholders in the
credential slots. Checks that need a valid config are skipped (SKIP) while it is invalid.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from voice_call.cli.i18n import N_, localize_config_error
from voice_call.config import (
    CARRIERS,
    Config,
    ConfigError,
    default_config_path,
    parse_config,
)
from voice_call.config.load import read_json5
from voice_call.security.exposure import (
    ExposureRefused,
    needs_public_webhook,
    refuse_tailnet_only,
    refuse_unreachable_webhook,
)
from voice_call.security.public_url import redact_url
from voice_call.tunnel import TunnelError
from voice_call.tunnel.record import read_exposure
from voice_call.tunnel.resolve import bind_url, plan_exposure
from voice_call.tunnel.tailscale import TailscaleCli, check_funnel_port, public_url

Status = Literal["ok", "fail", "skip"]
CHECK_IDS = (
    "config",
    "provider-credentials",
    "webhook-exposure",
    "webhook-reachable",
    "speech-keys",
    "responder",
)
CREDENTIAL_KEYS = {
    "twilio": ("accountSid", "authToken"),
    "telnyx": ("apiKey", "connectionId", "publicKey"),
    "plivo": ("authId", "authToken"),
}
PLACEHOLDER_NUMBER = "+15550000000"
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    id: str
    status: Status
    message: str  # what was found (ok, skip) or how to fix it (fail)

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "ok": self.ok, "status": self.status, "message": self.message}

    def line(self) -> str:
        """For a person: the message in the CLI's language (`wire()` keeps it English)."""
        return f"{self.status.upper()} {self.id}: {localize_config_error(self.message)}"


@dataclass
class SetupReport:
    checks: list[Check]
    config: Config | None = None

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def wire(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [check.wire() for check in self.checks]}


@dataclass
class Loaded:
    """The config, with credential problems told apart from every other problem."""

    config: Config | None
    errors: list[str] = field(default_factory=list)  # not about credentials
    credential_errors: list[str] = field(default_factory=list)
    source: Path | None = None


# --- loading ---------------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _snake(camel: str) -> str:
    return "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in camel)


def with_placeholder_credentials(raw: Any) -> Any:
    """A copy of `raw` with every missing carrier credential (and fromNumber) filled in."""
    data = copy.deepcopy(raw)
    section = data
    if isinstance(data, dict) and isinstance(data.get("plugins"), dict):  # an OpenClaw file
        entries = data["plugins"].get("entries")
        entry = entries.get("voice-call") if isinstance(entries, dict) else None
        section = entry.get("config") if isinstance(entry, dict) else None
    if not isinstance(section, dict):
        return data
    provider = section.get("provider")
    if provider not in CREDENTIAL_KEYS:
        return data
    block = section.setdefault(provider, {})
    if not isinstance(block, dict):
        return data
    for key in CREDENTIAL_KEYS[provider]:
        if _blank(block.get(key)) and _blank(block.get(_snake(key))):
            block[key] = "placeholder"
    if _blank(section.get("fromNumber")) and _blank(section.get("from_number")):
        section["fromNumber"] = PLACEHOLDER_NUMBER
    return data


def load_for_setup(path: str | Path | None, env: Mapping[str, str] | None = None) -> Loaded:
    env = os.environ if env is None else env
    source = Path(path).expanduser() if path else default_config_path(env)
    explicit = bool(path) or bool(env.get("VOICECALL_CONFIG", "").strip())
    try:
        raw: Any = read_json5(source) if source.exists() or explicit else {}
    except ConfigError as exc:
        return Loaded(None, exc.errors, [], source)
    try:
        return Loaded(parse_config(raw, env), source=source)
    except ConfigError as exc:
        as_written = exc.errors
    try:
        config: Config | None = parse_config(with_placeholder_credentials(raw), env)
        others: list[str] = []
    except ConfigError as exc:
        config, others = None, exc.errors
    credentials = [error for error in as_written if error not in others]
    return Loaded(config, others, credentials, source)


# --- the checks ------------------------------------------------------------------------------


def check_config(loaded: Loaded) -> Check:
    where = bool(loaded.source and loaded.source.exists())
    if loaded.errors:
        errors = "; ".join(loaded.errors)
        invalid = (
            N_("invalid config in {file}: {errors}") if where else N_("invalid config: {errors}")
        )
        return Check("config", "fail", invalid.format(file=loaded.source, errors=errors))
    assert loaded.config is not None
    if not loaded.config.enabled:
        return Check("config", "fail", N_("the service is disabled — set enabled: true"))
    found = N_("valid ({file})") if where else N_("valid (no config file: defaults)")
    found = found.format(file=loaded.source)
    return Check("config", "ok", found)


def check_credentials(loaded: Loaded) -> Check:
    config = loaded.config
    if loaded.credential_errors:
        return Check("provider-credentials", "fail", "; ".join(loaded.credential_errors))
    assert config is not None
    if config.provider not in CARRIERS:
        return Check("provider-credentials", "ok", N_("the mock provider needs no credentials"))
    keys = ", ".join((*CREDENTIAL_KEYS[config.provider], "fromNumber"))
    found = N_("{provider}: {keys} set").format(provider=config.provider, keys=keys)
    return Check("provider-credentials", "ok", found)


async def check_exposure(
    config: Config, env: Mapping[str, str], tailscale: TailscaleCli | None = None
) -> Check:
    name = "webhook-exposure"
    plan = plan_exposure(config)
    if not needs_public_webhook(config):
        why = (
            N_("the mock provider needs no public webhook")
            if config.provider == "mock"
            else N_("{provider}.apiBaseUrl is a local emulator, which calls back locally").format(
                provider=config.provider
            )
        )
        return Check(name, "ok", why)
    local = bind_url(config.serve.bind, config.serve.port, config.serve.path)
    try:
        refuse_tailnet_only(config, plan.tunnel)
        if plan.source == "publicUrl" and config.public_url:
            refuse_unreachable_webhook(config, config.public_url, source="publicUrl")
        elif plan.source == "local":
            refuse_unreachable_webhook(config, local, source="local")
    except ExposureRefused as exc:
        return Check(name, "fail", exc.message)
    if plan.source == "publicUrl" and config.public_url:
        unused = N_("publicUrl {url} (tunnel.provider is not used while publicUrl is set)")
        found = unused if config.tunnel.provider != "none" else N_("publicUrl {url}")
        return Check(name, "ok", found.format(url=redact_url(config.public_url)))
    if plan.source == "local":
        found = N_("the local URL {url} is not a private address").format(url=local)
        return Check(name, "ok", found)
    if plan.tunnel == "ngrok":
        from voice_call.tunnel import ngrok

        try:
            tunnel = ngrok.build(config, env)
        except TunnelError as exc:
            return Check(name, "fail", exc.message)
        found = (
            N_("ngrok tunnel on {domain}, opened by `voicecall serve`")
            if tunnel.domain
            else N_("ngrok tunnel on a random URL each start, opened by `voicecall serve`")
        )
        return Check(name, "ok", found.format(domain=tunnel.domain))
    return await _check_tailscale(config, plan.public_path, plan.source, tailscale)


async def _check_tailscale(
    config: Config, path: str, source: str, cli: TailscaleCli | None
) -> Check:
    name = "webhook-exposure"
    try:
        check_funnel_port("funnel", config.tailscale.port)
        me = await (cli or TailscaleCli()).self_info()
    except TunnelError as exc:
        return Check(name, "fail", exc.message)
    found = (
        N_(
            "Tailscale funnel on {url}, mounted by `voicecall serve` (tailscale.mode is "
            "deprecated — use tunnel.provider)"
        )
        if source == "tailscale"
        else N_("Tailscale funnel on {url}, mounted by `voicecall serve`")
    )
    url = public_url(me.dns_name, config.tailscale.port, path)
    return Check(name, "ok", found.format(url=url))


async def check_reachable(
    config: Config, home: Path, exposure: Check, http: httpx.AsyncClient | None = None
) -> Check:
    """GET the public webhook URL from here: our route answers 405 and `Allow: POST`."""
    name = "webhook-reachable"
    if not exposure.ok:
        return Check(name, "skip", N_("fix webhook-exposure first"))
    from voice_call.client.rpc import read_server_file

    running = read_server_file(home)
    record = read_exposure(home)
    url: str | None = None
    if running and record and record.get("pid") == running.get("pid"):
        url = record.get("webhookUrl") if isinstance(record.get("webhookUrl"), str) else None
    url = url or config.public_url
    if url is None:
        if not needs_public_webhook(config):
            return Check(name, "ok", N_("nothing to reach from outside: the carrier calls locally"))
        return Check(
            name,
            "fail",
            N_(
                "no server is running to test — start `voicecall serve` (it opens the tunnel), "
                "then run setup again"
            ),
        )
    try:
        if http is None:
            async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
                reply = await _probe(client, url)
        else:
            reply = await _probe(http, url)
    except httpx.HTTPError as exc:
        detail = str(exc) or type(exc).__name__
        return Check(
            name,
            "fail",
            N_(
                "nothing answered at {url} ({detail}) — is `voicecall serve` running, and does "
                "the proxy or tunnel forward that path to it?"
            ).format(url=redact_url(url), detail=detail),
        )
    if reply.status_code == 405 and "POST" in reply.headers.get("allow", ""):
        return Check(name, "ok", N_("{url} reaches this server").format(url=redact_url(url)))
    target = f"{config.serve.bind}:{config.serve.port}{config.serve.path}"
    return Check(
        name,
        "fail",
        N_(
            "{url} answered HTTP {status}, not this server — make the proxy or tunnel forward it "
            "to {target}"
        ).format(url=redact_url(url), status=reply.status_code, target=target),
    )


async def _probe(http: httpx.AsyncClient, url: str) -> httpx.Response:
    # ngrok's free tier puts a warning page in front of browser-like requests unless told not to.
    headers = {"ngrok-skip-browser-warning": "1", "User-Agent": "voicecall-setup"}
    return await http.get(url, headers=headers, follow_redirects=False)


async def check_speech(
    config: Config, env: Mapping[str, str] | None = None, source: Path | None = None
) -> Check:
    name = "speech-keys"
    if config.realtime.enabled:  # the config refuses it together with streaming
        return _check_realtime(config, os.environ if env is None else env, source)
    if not config.streaming.enabled:
        return Check(name, "ok", N_("streaming is off: the carrier speaks and listens"))
    problems = await _streaming_problems(config)
    if problems:
        return Check(name, "fail", "; ".join(problems))
    return Check(name, "ok", N_("streaming: speech services configured"))


def _check_realtime(config: Config, env: Mapping[str, str], source: Path | None) -> Check:
    """The chosen model service's settings and key, built as the server start builds them."""
    from voice_call.agent.responders.factory import responder_name
    from voice_call.realtime.factory import RealtimeFactory, RealtimeUnavailable

    name = "speech-keys"
    provider = config.realtime.provider or "openai"
    try:
        RealtimeFactory(config, consult=responder_name(config) != "none", env=env)
    except RealtimeUnavailable as exc:
        where = f" (in {source})" if source is not None else ""
        return Check(name, "fail", f"{exc}{where}")
    found = N_("realtime voice: {provider} key and settings found").format(provider=provider)
    return Check(name, "ok", found)


async def _streaming_problems(config: Config) -> list[str]:
    try:
        from voice_call.speech.stack import SpeechStack, SpeechUnavailable
    except ImportError:  # a build without the speech stack: the transcription key at least
        provider = config.streaming.provider or "openai"
        options = config.streaming.providers.openai
        if provider == "openai" and not ((options and options.api_key) or config.openai_api_key):
            return [
                "streaming.providers.openai.apiKey: required for speech-to-text on streamed "
                "calls — set it, or openaiApiKey / OPENAI_API_KEY"
            ]
        return []
    try:
        stack = SpeechStack(config)  # validates the STT key and builds the default voice
    except SpeechUnavailable as exc:
        return [str(exc)]
    await stack.close()
    return []


async def check_responder(config: Config) -> Check:
    name = "responder"
    from voice_call.agent.responders.factory import build_responder, responder_name

    provider = responder_name(config)  # a top-level responseModel alone chooses openai
    if provider == "none":
        if config.realtime.enabled:
            return Check(name, "ok", N_("none: the realtime voice model answers callers itself"))
        if config.inbound_policy != "disabled":
            return Check(
                name,
                "fail",
                N_(
                    'inboundPolicy is "{policy}" but responder.provider is "none": callers would '
                    'hear the greeting, then silence — set responder.provider (e.g. "openai"), '
                    'or inboundPolicy: "disabled"'
                ).format(policy=config.inbound_policy),
            )
        return Check(name, "ok", N_("none: conversations are driven by `voicecall continue`"))
    try:
        responder = build_responder(config)  # type: ignore[arg-type, unused-ignore]
    except Exception as exc:  # ConfigError, or the responder's own complaint
        message = "; ".join(exc.errors) if isinstance(exc, ConfigError) else str(exc)
        return Check(name, "fail", message)
    await _close(responder)
    if provider == "echo":
        return Check(name, "ok", N_("echo: repeats the caller (for testing, not for real callers)"))
    return Check(name, "ok", N_("{provider} responder configured").format(provider=provider))


async def _close(thing: Any) -> None:
    close = getattr(thing, "aclose", None) or getattr(thing, "close", None)
    if callable(close):
        result = close()
        if inspect.isawaitable(result):
            await result


# --- all together ----------------------------------------------------------------------------


async def run_checks(
    path: str | Path | None,
    home: Path,
    env: Mapping[str, str] | None = None,
    *,
    tailscale: TailscaleCli | None = None,
    http: httpx.AsyncClient | None = None,
) -> SetupReport:
    env = os.environ if env is None else env
    loaded = load_for_setup(path, env)
    checks = [check_config(loaded)]
    config = loaded.config
    if config is None:
        checks += [Check(name, "skip", N_("needs a valid config")) for name in CHECK_IDS[1:]]
        return SetupReport(checks)
    checks.append(check_credentials(loaded))
    exposure = await check_exposure(config, env, tailscale)
    checks.append(exposure)
    checks.append(await check_reachable(config, home, exposure, http))
    checks.append(await check_speech(config, env, loaded.source))
    checks.append(await check_responder(config))
    return SetupReport(checks, config)
