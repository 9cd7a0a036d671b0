"""Tailscale serve (tailnet only) and funnel (public) through the `tailscale` command line.

`tailscale status --json --peers=false` names this node (`Self.DNSName`); then each route —
the webhook path and the media-stream paths — is mounted with

    tailscale <serve|funnel> --bg --yes [--https PORT] --set-path PATH http://127.0.0.1:PORT/LOCAL

and unmounted with the same command ending in `off`. Routes are mounted one by one; when one
fails, those already mounted are unmounted again, so a failed start leaves the node as it was.
Funnel only serves ports 443, 8443 and 10000. Every command has a deadline (2.5 s, as in the
seed): a wedged tailscaled must not hang `voicecall serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from voice_call.security.public_url import valid_host
from voice_call.tunnel import TunnelError

log = logging.getLogger("voice_call.tunnel.tailscale")

Mode = Literal["serve", "funnel"]
COMMAND_TIMEOUT_S = 2.5
FUNNEL_PORTS = (443, 8443, 10000)
DEFAULT_HTTPS_PORT = 443
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
INSTALL_HELP = "https://tailscale.com/download"


class TailscaleError(TunnelError):
    def __init__(self, message: str, enable_url: str | None = None) -> None:
        super().__init__(message)
        self.enable_url = enable_url  # where an admin turns serve/funnel on for this node


@dataclass(frozen=True)
class SelfInfo:
    dns_name: str  # without the trailing dot
    node_id: str | None


@dataclass(frozen=True)
class Route:
    public_path: str  # what the world calls: https://<node><public_path>
    local_path: str  # where this server answers it


@dataclass(frozen=True)
class Completed:
    code: int
    stdout: str
    stderr: str


def check_funnel_port(mode: Mode, https_port: int) -> None:
    if mode == "funnel" and https_port not in FUNNEL_PORTS:
        raise TailscaleError(
            f"Tailscale Funnel only serves HTTPS ports 443, 8443 and 10000, not {https_port} "
            "— set tailscale.port to one of those"
        )


def enable_url(mode: Mode, node_id: str | None) -> str | None:
    return f"https://login.tailscale.com/f/{mode}?node={node_id}" if node_id else None


def public_url(dns_name: str, https_port: int, path: str) -> str:
    port = "" if https_port == DEFAULT_HTTPS_PORT else f":{https_port}"
    return f"https://{dns_name}{port}{path}"


def route_args(mode: Mode, https_port: int, path: str, target: str) -> list[str]:
    """The `tailscale` arguments that mount `path` → `target`, or unmount it (target "off")."""
    port = [] if https_port == DEFAULT_HTTPS_PORT else ["--https", str(https_port)]
    return [mode, "--bg", "--yes", *port, "--set-path", path, target]


def parse_self(stdout: str) -> SelfInfo:
    """This node's DNS name and id from `tailscale status --json`; TailscaleError otherwise."""
    try:
        data: Any = json.loads(stdout)
    except (ValueError, RecursionError):
        raise TailscaleError("`tailscale status --json` did not print JSON") from None
    if not isinstance(data, dict):
        raise TailscaleError("`tailscale status --json` printed an unexpected shape")
    state = data.get("BackendState")
    if isinstance(state, str) and state != "Running":
        raise TailscaleError(
            f"Tailscale is not connected (state {state!r}) — run `tailscale up` and try again"
        )
    me = data.get("Self")
    dns = me.get("DNSName") if isinstance(me, dict) else None
    name = dns.strip().rstrip(".").lower() if isinstance(dns, str) else ""
    if not name or ":" in name or not valid_host(name):
        raise TailscaleError(
            "Tailscale reports no DNS name for this machine — turn on MagicDNS and HTTPS "
            "certificates for the tailnet (https://login.tailscale.com/admin/dns)"
        )
    node_id = me.get("ID") if isinstance(me, dict) else None
    return SelfInfo(name, node_id if isinstance(node_id, str) and node_id else None)


class TailscaleCli:
    """Runs `tailscale …` as an asyncio subprocess, each command under a deadline."""

    def __init__(self, executable: str = "tailscale", timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.executable = executable
        self.timeout_s = timeout_s

    async def run(self, *args: str) -> Completed:
        shown = " ".join(["tailscale", *args])
        try:
            proc = await asyncio.create_subprocess_exec(
                self.executable,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            raise TailscaleError(
                f"the `tailscale` command is not installed or not on PATH — install it from "
                f"{INSTALL_HELP}"
            ) from None
        except OSError as exc:
            raise TailscaleError(f"cannot run `{shown}`: {exc}") from None
        try:
            async with asyncio.timeout(self.timeout_s):
                stdout, stderr = await proc.communicate()
        except TimeoutError:
            raise TailscaleError(
                f"`{shown}` did not finish within {self.timeout_s:g} s — is tailscaled running?"
            ) from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: never leave it behind
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if len(stdout) > MAX_OUTPUT_BYTES:
            raise TailscaleError(f"`{shown}` printed more than {MAX_OUTPUT_BYTES} bytes")
        return Completed(
            proc.returncode if proc.returncode is not None else -1,
            stdout.decode("utf-8", "replace"),
            stderr.decode("utf-8", "replace"),
        )

    async def self_info(self) -> SelfInfo:
        result = await self.run("status", "--json", "--peers=false")
        if result.code != 0:
            raise TailscaleError(
                f"`tailscale status` failed{_detail(result)} — is Tailscale running and logged "
                "in (`tailscale up`)?"
            )
        return parse_self(result.stdout)

    async def mount(self, mode: Mode, https_port: int, path: str, target: str) -> None:
        result = await self.run(*route_args(mode, https_port, path, target))
        if result.code != 0:
            raise TailscaleError(f"`tailscale {mode}` could not mount {path}{_detail(result)}")

    async def unmount(self, mode: Mode, https_port: int, path: str) -> bool:
        """Remove one route; False (logged) when tailscale refused or did not answer."""
        try:
            result = await self.run(*route_args(mode, https_port, path, "off"))
        except TailscaleError as exc:
            log.warning("could not unmount %s from tailscale %s: %s", path, mode, exc)
            return False
        if result.code != 0:
            log.debug("tailscale %s off %s%s", mode, path, _detail(result))
        return result.code == 0


def _detail(result: Completed) -> str:
    text = (result.stderr.strip() or result.stdout.strip())[-400:]
    return f" (exit {result.code}: {text})" if text else f" (exit {result.code})"


class TailscaleTunnel:
    """Mounts the routes on start and unmounts them on stop; a failed start rolls back."""

    def __init__(
        self,
        mode: Mode,
        https_port: int,
        routes: Sequence[Route],
        cli: TailscaleCli | None = None,
    ) -> None:
        if not routes:
            raise ValueError("at least the webhook route is needed")
        self.mode: Mode = mode
        self.name = f"tailscale-{mode}"
        self.https_port = https_port
        self.routes = tuple(routes)
        self.cli = cli or TailscaleCli()
        self.mounted: list[str] = []

    async def start(self, local_origin: str) -> str:
        """Mount every route → the public URL of the first (the webhook)."""
        check_funnel_port(self.mode, self.https_port)
        me = await self.cli.self_info()
        for route in self.routes:
            try:
                await self.cli.mount(
                    self.mode, self.https_port, route.public_path, local_origin + route.local_path
                )
            except TailscaleError as exc:
                rolled_back = len(self.mounted)
                await self.stop()
                hint = enable_url(self.mode, me.node_id)
                message = f"{exc}; rolled back {rolled_back} mounted route(s)"
                if hint:
                    message += f" — if {self.mode} is off for this machine, enable it at {hint}"
                raise TailscaleError(message, hint) from None
            self.mounted.append(route.public_path)
        url = public_url(me.dns_name, self.https_port, self.routes[0].public_path)
        log.info("tailscale %s open: %s → %s", self.mode, url, local_origin)
        return url

    async def stop(self) -> None:
        mounted, self.mounted = self.mounted, []
        for path in reversed(mounted):
            await self.cli.unmount(self.mode, self.https_port, path)
