"""`voicecall serve`: the one webhook, JSON-RPC and event server (`server/serve.py` runs it).

Every other command talks to this server; `server.json` in the state folder tells them where
it listens (`client/rpc.py` reads it).
"""

from __future__ import annotations

import click

from voice_call import __version__
from voice_call.cli.common import fail, reported, root_settings, run


@click.command()
@reported
def serve() -> None:
    """Run the webhook, JSON-RPC and event server (Ctrl-C stops)."""
    from voice_call.runtime import Runtime
    from voice_call.security.rpc_token import token_path
    from voice_call.server.serve import PortInUse
    from voice_call.server.serve import serve as run_server

    settings = root_settings()
    config = settings.config()
    home = settings.home()
    for warning in config.warnings:
        click.echo(f"warning: {warning}", err=True)
    runtime = Runtime(config, home)

    def ready(url: str) -> None:
        origin = url.rstrip("/")
        click.echo(f"voicecall {__version__} serving ({config.provider} provider)")
        click.echo(f"  webhook:    {origin}{config.serve.path}")
        click.echo(f"  JSON-RPC:   {origin}/rpc  (bearer token in {token_path(home)})")
        click.echo(f"  events:     {origin}/events")
        click.echo(f"  call store: {home}")
        click.echo("Press Ctrl-C to stop.")

    try:
        run(run_server(runtime, ready=ready))
    except PortInUse:
        serve_cfg = config.serve
        raise fail(
            f"port {serve_cfg.port} on {serve_cfg.bind} is already in use — is another "
            "`voicecall serve` running? Stop it, or set serve.port in the config to a free port."
        ) from None
    except KeyboardInterrupt:
        pass
