"""`voicecall mcp`: serve the voice_call tools over MCP (stdio, or streamable HTTP).

The MCP server is a thin client of the running `voicecall serve`: start that first (or after;
each tool call looks the server up afresh). With `--http` it listens on --host/--port and asks
for the RPC bearer token (the `rpc-token` file in the state folder).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from voice_call.client.rpc import RpcClient


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command(name="mcp")
@click.option("--http", "use_http", is_flag=True, help="Serve streamable HTTP instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP: address to bind.")
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=3335,
    show_default=True,
    help="HTTP: port to listen on.",
)
@click.option("--path", default="/mcp", show_default=True, help="HTTP: endpoint path.")
@click.pass_context
def mcp(ctx: click.Context, use_http: bool, host: str, port: int, path: str) -> None:
    """Expose the voice_call actions as MCP tools (stdio; --http for streamable HTTP)."""
    from voice_call.agent.mcp_server import build_mcp_server
    from voice_call.cli.main import Settings, _reported

    settings = ctx.find_object(Settings)
    config_path = settings.config_path if settings else None

    def connect() -> RpcClient:
        from voice_call.client.rpc import RpcClient
        from voice_call.config import load_config, state_home

        return RpcClient.from_home(load_config(config_path), state_home(), timeout=None)

    @_reported
    def run() -> None:
        from voice_call.config import load_config

        load_config(config_path)  # a broken config is reported now, not on the first tool call
        server = build_mcp_server(connect)
        if not use_http:
            server.run("stdio")
            return
        _serve_http(server, host, port, path)

    run()


def _serve_http(server: MCPServer, host: str, port: int, path: str) -> None:
    import anyio
    import uvicorn

    from voice_call.agent.mcp_server import require_bearer
    from voice_call.config import state_home
    from voice_call.security.rpc_token import ensure_rpc_token, token_path

    if not _loopback(host):
        click.echo(
            f"warning: MCP over HTTP on {host}: anyone who can reach it and holds the token can "
            "place phone calls; prefer 127.0.0.1 behind your own TLS proxy",
            err=True,
        )
    home = state_home()
    token = ensure_rpc_token(home)
    app = server.streamable_http_app(streamable_http_path=path, host=host)
    click.echo(f"MCP (streamable HTTP) on http://{host}:{port}{path}", err=True)
    click.echo(f"  bearer token: the file {token_path(home)}", err=True)
    config = uvicorn.Config(require_bearer(app, token), host=host, port=port, log_level="warning")
    anyio.run(uvicorn.Server(config).serve)
