"""Which URL carriers are told to call, the media-stream URL next to it, and the tunnel behind it.

Priority (README "Public exposure"): `publicUrl` > `tunnel.provider` > the legacy
`tailscale.mode` > the local URL. Only the winner is used: with `publicUrl` set no tunnel is
opened. The stream WebSocket URL is derived from the same public origin (https → wss), keeping
any path prefix a reverse proxy puts in front of the webhook path, so carriers reach media where
they reach webhooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from voice_call.config import Config
from voice_call.tunnel import Tunnel
from voice_call.tunnel.tailscale import Mode, Route

Source = Literal["publicUrl", "tunnel", "tailscale", "local"]
TunnelKind = Literal["ngrok", "tailscale-serve", "tailscale-funnel"]


@dataclass(frozen=True)
class ExposurePlan:
    source: Source
    tunnel: TunnelKind | None  # what to open; None for publicUrl and the local URL
    public_path: str  # the webhook path carriers call
    local_path: str  # serve.path, where this server answers it
    https_port: int  # Tailscale's HTTPS port (tailscale.port); ngrok ignores it


def plan_exposure(config: Config) -> ExposurePlan:
    local = config.serve.path
    https_port = config.tailscale.port
    if config.public_url:
        path = urlsplit(config.public_url).path or "/"
        return ExposurePlan("publicUrl", None, path, local, https_port)
    provider = config.tunnel.provider
    if provider != "none":
        return ExposurePlan("tunnel", provider, local, local, https_port)
    mode = config.tailscale.mode
    if mode != "off":
        kind: TunnelKind = "tailscale-funnel" if mode == "funnel" else "tailscale-serve"
        return ExposurePlan("tailscale", kind, config.tailscale.path, local, https_port)
    return ExposurePlan("local", None, local, local, https_port)


def normalise_path(value: str) -> str:
    """One leading slash, no trailing one ("voice/webhook/" → "/voice/webhook"), as in config."""
    path = "/" + value.strip().strip("/")
    if any(ch.isspace() or ch in "?#" for ch in path):
        raise ValueError(f"{value!r} is not a URL path — use a plain path such as /voice/webhook")
    return path


def bracketed(host: str) -> str:
    """A host as a URL writes it: an IPv6 address in brackets (`[::1]`)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def bind_url(bind: str, port: int, path: str = "") -> str:
    """`http://<serve.bind>:<port><path>`, the bind address as configured (IPv6 bracketed)."""
    return f"http://{bracketed(bind)}:{port}{path}"


def local_origin(bind: str, port: int) -> str:
    """Where a tunnel on this machine reaches the server: a wildcard bind becomes 127.0.0.1."""
    host = "127.0.0.1" if bind in ("", "0.0.0.0", "::") else bind
    return f"http://{bracketed(host)}:{port}"


def path_prefix(public_path: str, local_path: str) -> str:
    """What a proxy puts before the local path: ("/p/voice/webhook", "/voice/webhook") → "/p"."""
    public, local = public_path.rstrip("/"), local_path.rstrip("/")
    if local and public != local and public.endswith(local):
        return public[: -len(local)]
    return ""


def stream_paths(config: Config) -> list[str]:
    """Local paths of the media WebSockets in use: realtime and/or streaming."""
    paths: list[str] = []
    if config.realtime.enabled and config.realtime.stream_path:
        paths.append(config.realtime.stream_path)
    if config.streaming.enabled and config.streaming.stream_path not in paths:
        paths.append(config.streaming.stream_path)
    return paths


def exposure_routes(config: Config, public_path: str, local_path: str) -> list[Route]:
    """The webhook route and every stream route, public paths sharing the webhook's prefix."""
    prefix = path_prefix(public_path, local_path)
    routes = [Route(public_path, local_path)]
    routes += [Route(prefix + path, path) for path in stream_paths(config)]
    return routes


def stream_url(webhook_url: str, local_webhook_path: str, stream_path: str) -> str:
    """The media WebSocket URL on the webhook's origin: https → wss, http → ws."""
    parts = urlsplit(webhook_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    prefix = path_prefix(parts.path, local_webhook_path)
    return f"{scheme}://{netloc}{prefix}{stream_path}"


def build_tunnel(config: Config, env: Mapping[str, str] | None = None) -> Tunnel | None:
    """The tunnel the config's winning exposure needs, or None (publicUrl or local URL).

    Raises TunnelError when it cannot be built (no ngrok authtoken, a bad domain).
    """
    plan = plan_exposure(config)
    if plan.tunnel is None:
        return None
    if plan.tunnel == "ngrok":
        from voice_call.tunnel import ngrok

        return ngrok.build(config, env)
    from voice_call.tunnel.tailscale import TailscaleTunnel

    mode: Mode = "funnel" if plan.tunnel == "tailscale-funnel" else "serve"
    routes = exposure_routes(config, plan.public_path, plan.local_path)
    return TailscaleTunnel(mode, plan.https_port, routes)
