"""`voicecall serve`: the one webhook, JSON-RPC and event server (`server/serve.py` runs it).

Every other command talks to this server; `server.json` in the state folder tells them where
it listens (`client/rpc.py` reads it). The banner names the URL carriers must call (publicUrl,
the tunnel's, or the local one) and the store file actually opened.

`--workers N` (N > 1) runs N such servers sharing the port, supervised by this process
(`server/workers.py`); each is a cluster instance, so it needs the Redis store.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from voice_call import __version__
from voice_call.cli.common import EXIT_FAILURE, EXIT_USAGE, fail, reported, root_settings, run
from voice_call.cli.i18n import N_, _

if TYPE_CHECKING:
    from pathlib import Path

    from voice_call.config import Config
    from voice_call.tunnel.resolve import ExposurePlan

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


def _workers(_ctx: click.Context, _param: click.Parameter, value: int) -> int:
    from voice_call.server.workers import MAX_WORKERS

    if not 1 <= value <= MAX_WORKERS:
        raise click.BadParameter(
            _("must be between 1 and {most} — pass about one per CPU core").format(most=MAX_WORKERS)
        )
    return value


def _exposure(plan: ExposurePlan) -> str:
    """How carriers reach the webhook URL, for the banner."""
    source = plan.source
    if source == "publicUrl":
        return "publicUrl"
    if source in ("tunnel", "tailscale"):
        return _("through {tunnel}").format(tunnel=plan.tunnel)
    return _("local only: fine for the mock provider and `voicecall sim`")


def _banner(config: Config, plan: ExposurePlan, webhook: str, home: Path, local: str) -> list[str]:
    from voice_call.security.rpc_token import token_path
    from voice_call.store.factory import describe_store

    origin = local.rstrip("/")
    return [
        _("voicecall {version} serving ({provider} provider) on {origin}").format(
            version=__version__, provider=config.provider, origin=origin
        ),
        _("  webhook:    {url}  (carriers call this; {exposure})").format(
            url=webhook, exposure=_exposure(plan)
        ),
        _("  JSON-RPC:   {origin}/rpc  (bearer token in {file})").format(
            origin=origin, file=token_path(home)
        ),
        _("  events:     {origin}/events").format(origin=origin),
        _("  call store: {store}").format(store=describe_store(config, home)),
    ]


@click.command(help=_("Run the webhook, JSON-RPC and event server (Ctrl-C stops)."))
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help=_("Port to listen on (0: any free port). Default: serve.port."),
)
@click.option("--bind", callback=_address, help=_("Address to listen on. Default: serve.bind."))
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    callback=_workers,
    help=_("Server processes sharing the port (more than 1 needs the Redis call store)."),
)
@reported
def serve(port: int | None, bind: str | None, workers: int) -> None:
    from voice_call.server.serve import CannotListen, PortInUse, ServerFailed

    settings = root_settings()
    config = _overridden(settings.config(), port, bind)
    home = settings.home()
    for warning in config.warnings:
        click.echo(_("warning: {warning}").format(warning=warning), err=True)
    if config.skip_signature_verification:
        click.echo(_(SKIP_SIGNATURES_WARNING), err=True)
    serve_cfg = config.serve
    try:
        if workers > 1:
            _supervise(config, home, workers)
        else:
            _serve_one(config, home)
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


def _serve_one(config: Config, home: Path) -> None:
    """This process is the server (or one worker of `--workers`)."""
    import asyncio
    import os

    from voice_call.runtime import Runtime
    from voice_call.server.serve import serve as run_server
    from voice_call.server.workers import is_worker, orphan_guard, report_listening

    runtime = Runtime(config, home)
    worker = is_worker()
    supervisor = os.getppid()

    def ready(url: str) -> None:
        if worker:  # the supervisor prints the banner once for all
            report_listening()
            return
        for line in _banner(config, runtime.exposure, runtime.webhook_url(), home, url):
            click.echo(line)
        click.echo(_("Press Ctrl-C to stop."))

    async def serving() -> None:
        guard = asyncio.create_task(orphan_guard(supervisor)) if worker else None
        try:
            await run_server(runtime, ready=ready, worker=worker)
        finally:
            if guard is not None:
                guard.cancel()

    run(serving())


def _supervise(config: Config, home: Path, count: int) -> None:
    """Hold the port, run `count` workers on it and restart those that die (server/workers.py)."""
    from voice_call.cli import i18n
    from voice_call.client.rpc import local_url
    from voice_call.server.serve import bind_socket
    from voice_call.server.workers import Supervisor, WorkerFailed
    from voice_call.tunnel.resolve import bind_url, plan_exposure

    plan = plan_exposure(config)
    _refuse_for_workers(config, plan)
    serve_cfg = config.serve
    holder = bind_socket(serve_cfg.bind, serve_cfg.port, reuse_port=True, listen=False)
    port = int(holder.getsockname()[1])  # port 0 is resolved once, for every worker
    root = ["--lang", "zh-TW" if i18n.current() == i18n.CHINESE else "en"]  # as chosen here
    if root_settings().config_path:
        root += ["--config", str(root_settings().config_path)]
    command = [sys.executable, "-m", "voice_call.cli", *root, "serve"]
    command += ["--port", str(port), "--bind", serve_cfg.bind]
    local = local_url(serve_cfg.bind, port)
    webhook = config.public_url or bind_url(serve_cfg.bind, port, serve_cfg.path)

    def ready() -> None:
        for line in _banner(config, plan, webhook, home, local):
            click.echo(line)
        click.echo(_("  workers:    {count} processes sharing the port").format(count=count))
        click.echo(_("Press Ctrl-C to stop."))

    supervisor = Supervisor(command, count, home, local)
    try:
        supervisor.run(holder, ready)
    except WorkerFailed as exc:  # the worker printed why
        raise click.exceptions.Exit(exc.code or EXIT_FAILURE) from None


def _refuse_for_workers(config: Config, plan: ExposurePlan) -> None:
    if config.store.backend != "redis":
        raise fail(
            _(
                "--workers needs the Redis call store: each worker is an instance of a "
                "cluster and SQLite is one process's store — set store.backend to "
                '"redis" and store.url in the config, or run one worker'
            ),
            EXIT_USAGE,
        )
    if plan.tunnel is not None:
        raise fail(
            _(
                "--workers cannot open {tunnel}: each worker would open its own — run the "
                "tunnel yourself and set publicUrl to its URL, or run one worker"
            ).format(tunnel=plan.tunnel),
            EXIT_USAGE,
        )
