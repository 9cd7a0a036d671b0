"""`voicecall mcp`: serve the voice_call tools over MCP (stdio, or streamable HTTP).

The MCP server is a thin client of the running `voicecall serve`: start that first (or after;
each tool call looks the server up afresh). With `--http` it listens on --host/--port and asks
for the RPC bearer token (the `rpc-token` file in the state folder).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import click

from voice_call.cli.common import reported, root_settings
from voice_call.cli.i18n import _

if TYPE_CHECKING:
    from pathlib import Path

    from mcp.server.mcpserver import MCPServer

    from voice_call.client.rpc import RpcClient


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command(
    name="mcp",
    help=_("Expose the voice_call actions as MCP tools (stdio; --http for streamable HTTP)."),
)
@click.option("--http", "use_http", is_flag=True, help=_("Serve streamable HTTP instead of stdio."))
@click.option("--host", default="127.0.0.1", show_default=True, help=_("HTTP: address to bind."))
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=3335,
    show_default=True,
    help=_("HTTP: port to listen on."),
)
@click.option("--path", default="/mcp", show_default=True, help=_("HTTP: endpoint path."))
@reported
def mcp(use_http: bool, host: str, port: int, path: str) -> None:
    from voice_call.agent.mcp_server import build_mcp_server

    settings = root_settings()

    def connect() -> RpcClient:
        from voice_call.client.rpc import RpcClient

        return RpcClient.from_home(settings.config(), settings.home(), timeout=None)

    settings.config()  # a broken config is reported now, not on the first tool call
    server = build_mcp_server(connect)
    if not use_http:
        server.run("stdio")
        return
    _serve_http(server, host, port, path, settings.home())


def _serve_http(server: MCPServer, host: str, port: int, path: str, home: Path) -> None:
    import anyio
    import uvicorn

    from voice_call.agent.mcp_server import require_bearer
    from voice_call.security.rpc_token import ensure_rpc_token, token_path
    from voice_call.server.http_limits import ConnectionLimits, limited_http_protocol
    from voice_call.tunnel.resolve import bind_url

    if not _loopback(host):
        click.echo(
            _(
                "warning: MCP over HTTP on {host}: anyone who can reach it and holds the token "
                "can place phone calls; prefer 127.0.0.1 behind your own TLS proxy"
            ).format(host=host),
            err=True,
        )
    token = ensure_rpc_token(home)
    app = server.streamable_http_app(streamable_http_path=path, host=host)
    click.echo(_("MCP (streamable HTTP) on {url}").format(url=bind_url(host, port, path)), err=True)
    click.echo(_("  bearer token: the file {file}").format(file=token_path(home)), err=True)
    config = uvicorn.Config(
        require_bearer(app, token),
        host=host,
        port=port,
        log_level="warning",
        # bounded request heads and connections, as `voicecall serve`; and no trust in
        # X-Forwarded-* from 127.0.0.1: the peer is who it is
        http=limited_http_protocol(ConnectionLimits()),
        proxy_headers=False,
    )
    anyio.run(uvicorn.Server(config).serve)
