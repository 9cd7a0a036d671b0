"""`voicecall serve`: the one webhook, JSON-RPC and event server (`server/serve.py` runs it).

Every other command talks to this server; `server.json` in the state folder tells them where
it listens (`client/rpc.py` reads it). The banner names the URL carriers must call (publicUrl,
the tunnel's, or the local one) and the store file actually opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from voice_call import __version__
from voice_call.cli.common import fail, reported, root_settings, run
from voice_call.cli.i18n import N_, _

if TYPE_CHECKING:
    from pathlib import Path

    from voice_call.config import Config
    from voice_call.runtime import Runtime

SKIP_SIGNATURES_WARNING = N_(
    "WARNING: skipSignatureVerification is on: webhooks are accepted without the carrier's "
    "signature, so anyone who can reach the webhook URL can fake call events — for local "
    "development only; remove it before real calls"
)


def _overridden(config: Config, port: int | None, bind: str | None) -> Config:
    """The config with --port/--bind in place of serve.port/serve.bind."""
    changes: dict[str, object] = {}
    if port is not None:
        changes["port"] = port
    if bind is not None:
        changes["bind"] = bind
    if not changes:
        return config
    return config.model_copy(update={"serve": config.serve.model_copy(update=changes)})


def _address(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter(_("must not be empty — pass an address such as 127.0.0.1"))
    return value.strip() if value is not None else None


def _exposure(runtime: Runtime) -> str:
    """How carriers reach the webhook URL, for the banner."""
    source = runtime.exposure.source
    if source == "publicUrl":
        return "publicUrl"
    if source in ("tunnel", "tailscale"):
        return _("through {tunnel}").format(tunnel=runtime.exposure.tunnel)
    return _("local only: fine for the mock provider and `voicecall sim`")


def _banner(runtime: Runtime, home: Path, local: str) -> list[str]:
    from voice_call.security.rpc_token import token_path
    from voice_call.store.factory import describe_store

    config = runtime.config
    origin = local.rstrip("/")
    return [
        _("voicecall {version} serving ({provider} provider) on {origin}").format(
            version=__version__, provider=config.provider, origin=origin
        ),
        _("  webhook:    {url}  (carriers call this; {exposure})").format(
            url=runtime.webhook_url(), exposure=_exposure(runtime)
        ),
        _("  JSON-RPC:   {origin}/rpc  (bearer token in {file})").format(
            origin=origin, file=token_path(home)
        ),
        _("  events:     {origin}/events").format(origin=origin),
        _("  call store: {store}").format(store=describe_store(config, home)),
        _("Press Ctrl-C to stop."),
    ]


@click.command(help=_("Run the webhook, JSON-RPC and event server (Ctrl-C stops)."))
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help=_("Port to listen on (0: any free port). Default: serve.port."),
)
@click.option("--bind", callback=_address, help=_("Address to listen on. Default: serve.bind."))
@reported
def serve(port: int | None, bind: str | None) -> None:
    from voice_call.runtime import Runtime
    from voice_call.server.serve import CannotListen, PortInUse, ServerFailed
    from voice_call.server.serve import serve as run_server

    settings = root_settings()
    config = _overridden(settings.config(), port, bind)
    home = settings.home()
    for warning in config.warnings:
        click.echo(_("warning: {warning}").format(warning=warning), err=True)
    if config.skip_signature_verification:
        click.echo(_(SKIP_SIGNATURES_WARNING), err=True)
    runtime = Runtime(config, home)

    def ready(url: str) -> None:
        for line in _banner(runtime, home, url):
            click.echo(line)

    serve_cfg = config.serve
    try:
        run(run_server(runtime, ready=ready))
    except PortInUse:
        fix = "--port" if port is not None else _("serve.port in the config")
        raise fail(
            _(
                "port {port} on {bind} is already in use — is another "
                "`voicecall serve` running? Stop it, or set {fix} to a free port"
            ).format(port=serve_cfg.port, bind=serve_cfg.bind, fix=fix)
        ) from None
    except ServerFailed as exc:
        raise fail(_("{error} — fix what it says and start again").format(error=exc)) from None
    except CannotListen as exc:
        where = "--bind/--port" if bind is not None or port is not None else "serve.bind"
        raise fail(
            _("{error} — set {where} to an address of this machine and a free port").format(
                error=exc, where=where
            )
        ) from None
    except KeyboardInterrupt:
        pass
