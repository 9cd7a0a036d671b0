"""`voicecall expose --mode funnel|serve|off`: put the webhook on Tailscale by hand.

Mounts the webhook path and the media-stream paths with `tailscale funnel|serve --bg`, so the
routes stay up after this command exits (pair it with `publicUrl`), or removes them with
`--mode off`. `voicecall serve` does the same by itself with `tunnel.provider:
"tailscale-funnel"`. JSON output is the seed's: `{ok, mode, path, streamPaths, localUrl,
publicUrl, hint?}`.
"""

from __future__ import annotations

from typing import Any

import click

from voice_call.cli.common import json_flag, print_json, reported, root_settings, run
from voice_call.cli.i18n import N_, _
from voice_call.config import Config
from voice_call.tunnel.resolve import exposure_routes, local_origin, normalise_path
from voice_call.tunnel.tailscale import (
    Mode,
    TailscaleCli,
    TailscaleError,
    TailscaleTunnel,
    check_funnel_port,
)

SERVE_NOTE = N_("Tailscale serve is reachable only inside your tailnet: carriers need funnel.")
DISABLED_NOTE = (
    "Tailscale serve/funnel may be disabled on this tailnet (or need an admin to enable it)."
)


def _path(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalise_path(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


async def run_expose(
    mode: str,
    config: Config,
    *,
    public_path: str,
    local_path: str,
    port: int,
    cli: TailscaleCli | None = None,
) -> dict[str, Any]:
    """Mount (funnel/serve) or unmount (off) the routes; the seed's JSON result."""
    cli = cli or TailscaleCli()
    routes = exposure_routes(config, public_path, local_path)
    stream_paths = [route.public_path for route in routes[1:]]
    https_port = config.tailscale.port
    if mode == "off":
        await cli.self_info()  # a clear error when tailscale is missing or logged out
        removed: list[str] = []
        for route in routes:
            for each in ("serve", "funnel"):
                if await cli.unmount(each, https_port, route.public_path):
                    removed.append(f"{each} {route.public_path}")
        return {
            "ok": True,
            "mode": "off",
            "path": public_path,
            "streamPaths": stream_paths,
            "removed": removed,
        }
    chosen: Mode = "funnel" if mode == "funnel" else "serve"
    origin = local_origin(config.serve.bind, port)
    result: dict[str, Any] = {
        "ok": False,
        "mode": chosen,
        "path": public_path,
        "streamPaths": stream_paths,
        "localUrl": origin + local_path,
        "publicUrl": None,
    }
    try:
        result["publicUrl"] = await TailscaleTunnel(chosen, https_port, routes, cli).start(origin)
    except TailscaleError as exc:
        result["error"] = exc.message
        result["hint"] = {"note": DISABLED_NOTE, "enableUrl": exc.enable_url}
        return result
    result["ok"] = True
    return result


def _default_port(config: Config) -> int:
    """The running server's port when one runs, else serve.port."""
    from voice_call.client.rpc import read_server_file

    running = read_server_file(root_settings().home())
    url = running.get("url") if running else None
    if isinstance(url, str) and url.rsplit(":", 1)[-1].isdigit():
        return int(url.rsplit(":", 1)[-1])
    if config.serve.port == 0:
        raise click.UsageError(
            _("serve.port is 0 (any free port) and no server is running — pass --port")
        )
    return config.serve.port


@click.command(help=_("Expose the webhook through Tailscale funnel/serve, or remove it (off)."))
@json_flag
@click.option(
    "--mode",
    type=click.Choice(["funnel", "serve", "off"]),
    default="funnel",
    show_default=True,
    help=_("funnel: public; serve: your tailnet only; off: remove the routes."),
)
@click.option(
    "--path", "public_path", callback=_path, help=_("Public path. Default: tailscale.path.")
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help=_("Local webhook port. Default: the running server's, else serve.port."),
)
@click.option("--serve-path", callback=_path, help=_("Local webhook path. Default: serve.path."))
@reported
def expose(mode: str, public_path: str | None, port: int | None, serve_path: str | None) -> None:
    settings = root_settings()
    config = settings.config(service=mode != "off")  # routes can be removed while switched off
    if mode == "funnel":
        try:
            check_funnel_port("funnel", config.tailscale.port)
        except TailscaleError as exc:
            raise click.UsageError(exc.message) from None
    local_path = serve_path or config.serve.path
    result = run(
        run_expose(
            mode,
            config,
            public_path=public_path or config.tailscale.path,
            local_path=local_path,
            port=port or (_default_port(config) if mode != "off" else 0),
        )
    )
    if settings.as_json:
        print_json(result)
    else:
        _print_result(result)
    if not result["ok"]:
        raise click.exceptions.Exit(1)


def _print_result(result: dict[str, Any]) -> None:
    if result["mode"] == "off":
        removed = result["removed"]
        click.echo(
            _("Removed {count} Tailscale route(s).").format(count=len(removed))
            if removed
            else _("Nothing to remove.")
        )
        return
    if not result["ok"]:
        click.echo(_("Error: {message}").format(message=result["error"]), err=True)
        return
    click.echo(
        _("Tailscale {mode} is on: {public_url} → {local_url}").format(
            mode=result["mode"], public_url=result["publicUrl"], local_url=result["localUrl"]
        )
    )
    for path in result["streamPaths"]:
        click.echo(_("  and {path} (media stream)").format(path=path))
    click.echo(_("The routes stay up until `voicecall expose --mode off`."))
    if result["mode"] == "serve":
        click.echo(_(SERVE_NOTE))
    else:
        click.echo(
            _('Point carriers at it: publicUrl: "{url}" in the config.').format(
                url=result["publicUrl"]
            )
        )
