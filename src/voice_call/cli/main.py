"""The `voicecall` command line.

Every operational command talks to a running `voicecall serve` over JSON-RPC, so there is only
ever one webhook server (the seed's EADDRINUSE bugs came from commands starting their own).
`status` alone falls back to reading the call store read-only when no server answers.

Start-up time matters (`voicecall --help` should feel instant), so this module imports only
click at the top; rich, httpx, pydantic, the config and the server load inside the commands.

Exit codes: 0 ok; 1 the command failed (server not running, call not found, carrier error,
…); 2 the request itself was wrong (usage error, invalid config, invalid input such as a
number that is not E.164).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from voice_call import __version__
from voice_call.errors import InvalidInput, VoiceCallError

if TYPE_CHECKING:
    from rich.console import Console

    from voice_call.config import Config

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILURE = 1
EXIT_USAGE = 2


@dataclass
class Settings:
    config_path: str | None
    as_json: bool

    def config(self) -> Config:
        from voice_call.config import load_config

        return load_config(self.config_path)

    def home(self) -> Path:
        from voice_call.config import state_home

        return state_home()


def _settings() -> Settings:
    settings = click.get_current_context().find_object(Settings)
    assert settings is not None
    return settings


def _run(coro: Coroutine[Any, Any, R]) -> R:
    import asyncio  # not at the top: it alone costs ~35 ms of start-up

    return asyncio.run(coro)


def _fail(message: str, code: int = EXIT_FAILURE) -> click.exceptions.Exit:
    click.echo(f"Error: {message}", err=True)
    return click.exceptions.Exit(code)


def _reported(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn expected errors into a message on stderr and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except VoiceCallError as exc:
            code = EXIT_USAGE if isinstance(exc, InvalidInput) else EXIT_FAILURE
            raise _fail(exc.message, code) from None
        except Exception as exc:
            from voice_call.config import ConfigError

            if isinstance(exc, ConfigError):
                _print_config_errors(exc)
                raise click.exceptions.Exit(EXIT_USAGE) from None
            raise

    return wrapper


def _print_config_errors(exc: Any) -> None:
    where = f" in {exc.source}" if getattr(exc, "source", None) else ""
    click.echo(f"Error: invalid config{where}:", err=True)
    for line in exc.errors:
        click.echo(f"  {line}", err=True)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _console() -> Console:
    from voice_call.cli.output import make_console

    return make_console()


def _rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
    from voice_call.client.rpc import RpcClient

    settings = _settings()
    client = RpcClient.from_home(settings.config(), settings.home())
    return client.call_sync(method, params)


def _json_flag(fn: Callable[P, R]) -> Callable[P, R]:
    """`--json` after the command too (`voicecall status --json`), same as before it."""

    def set_json(ctx: click.Context, _: click.Parameter, value: bool) -> None:
        if value:
            settings = ctx.find_object(Settings)
            assert settings is not None
            settings.as_json = True

    option = click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=set_json,
        help="Print machine-readable JSON.",
    )
    return option(fn)


# --------------------------------------------------------------------------- the group

# Commands that live in their own modules, imported only when run: name → (module:attr, help).
# One line per command; keep the short help here so `voicecall --help` imports nothing.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("voice_call.cli.sim:sim", "Run a Twilio, Telnyx or Plivo emulator on loopback."),
    "expose": ("voice_call.cli.expose:expose", "Expose the webhook on Tailscale funnel/serve."),
    "setup": ("voice_call.cli.setup:setup", "Check config, credentials, exposure and keys."),
    "smoke": ("voice_call.cli.setup:smoke", "Run the setup checks, then optionally one real call."),
    "latency": ("voice_call.cli.latency:latency", "Per-turn latency p50/p95/p99 from the store."),
    "mcp": ("voice_call.cli.mcp:mcp", "Serve the voice_call tools over MCP (stdio or --http)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            import importlib

            module, _, attr = LAZY_COMMANDS[cmd_name][0].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [
            (name, LAZY_COMMANDS[name][1])
            if name in LAZY_COMMANDS and name not in self.commands
            else (name, self.commands[name].get_short_help_str(limit=formatter.width))
            for name in self.list_commands(ctx)
            if name in LAZY_COMMANDS or not self.commands[name].hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="VOICECALL_CONFIG",
    help="Config file (JSON5). Default: $VOICECALL_CONFIG or ~/.voicecall/config.json5.",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.version_option(__version__, prog_name="voicecall")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    """Place and control phone calls for AI agents (Twilio, Telnyx, Plivo, or a local mock).

    Start a server with `voicecall serve`, then drive calls from another shell. Try
    `voicecall demo` for a complete simulated call with no setup.
    """
    ctx.obj = Settings(config_path, as_json)


# --------------------------------------------------------------------------- serve


@cli.command()
@_reported
def serve() -> None:
    """Run the webhook, JSON-RPC and event server (Ctrl-C stops)."""
    from voice_call.runtime import Runtime
    from voice_call.security.rpc_token import token_path
    from voice_call.server.serve import PortInUse
    from voice_call.server.serve import serve as run_server

    settings = _settings()
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
        _run(run_server(runtime, ready=ready))
    except PortInUse:
        serve_cfg = config.serve
        raise _fail(
            f"port {serve_cfg.port} on {serve_cfg.bind} is already in use — is another "
            "`voicecall serve` running? Stop it, or set serve.port in the config to a free port."
        ) from None
    except KeyboardInterrupt:
        pass


# --------------------------------------------------------------------------- call commands


@cli.command()
@_json_flag
@click.option("-t", "--to", help="Number to call (E.164). Default: toNumber from the config.")
@click.option("-m", "--message", required=True, help="What to say when the call is answered.")
@click.option(
    "--mode",
    type=click.Choice(["notify", "conversation"]),
    help="notify: say the message and hang up; conversation: stay on the line. "
    "Default: outbound.defaultMode of the server's config.",
)
@_reported
def call(to: str | None, message: str, mode: str | None) -> None:
    """Place an outbound call."""
    params: dict[str, Any] = {"message": message}
    if to:
        params["to"] = to
    if mode:
        params["mode"] = mode
    result = _rpc("voicecall.initiate", params)
    if _settings().as_json:
        _print_json(result)
        return
    call_id = result.get("callId")
    click.echo(f"Call started: {call_id}")
    click.echo(f"Follow it with: voicecall tail --call-id {call_id}")


@cli.command(name="continue")
@_json_flag
@click.option("--call-id", required=True, help="The call's id.")
@click.option("-m", "--message", required=True, help="What to say before listening.")
@_reported
def continue_(call_id: str, message: str) -> None:
    """Say something, then wait for and print the caller's reply."""
    result = _rpc("voicecall.continue", {"callId": call_id, "message": message})
    if _settings().as_json:
        _print_json(result)
    else:
        click.echo(result.get("transcript", ""))


@cli.command()
@_json_flag
@click.option("--call-id", required=True, help="The call's id.")
@click.option("-m", "--message", required=True, help="What to say.")
@_reported
def speak(call_id: str, message: str) -> None:
    """Say something on a call without waiting for a reply."""
    _done(_rpc("voicecall.speak", {"callId": call_id, "message": message}), "Spoken.")


@cli.command()
@_json_flag
@click.option("--call-id", required=True, help="The call's id.")
@click.option("--digits", required=True, help="Touch-tone digits: 0-9 * # (w, p or , pause).")
@_reported
def dtmf(call_id: str, digits: str) -> None:
    """Send touch-tone digits on a call."""
    _done(_rpc("voicecall.dtmf", {"callId": call_id, "digits": digits}), f"Sent {digits}.")


@cli.command()
@_json_flag
@click.option("--call-id", required=True, help="The call's id.")
@_reported
def end(call_id: str) -> None:
    """Hang up a call."""
    _done(_rpc("voicecall.end", {"callId": call_id}), "Call ended.")


def _done(result: dict[str, Any], message: str) -> None:
    if _settings().as_json:
        _print_json(result)
    else:
        click.echo(message)


# --------------------------------------------------------------------------- status


@cli.command()
@_json_flag
@click.option("--call-id", help="Show one call (any state). Default: all active calls.")
@click.option("--full", is_flag=True, help="Include transcript, turn latency and metadata.")
@_reported
def status(call_id: str | None, full: bool) -> None:
    """Show active calls, or one call's details.

    Asks the running server; with no server running, reads the call store read-only.
    """
    from voice_call.client.rpc import ServerUnavailable

    params: dict[str, Any] = {"full": full}
    if call_id:
        params["callId"] = call_id
    note = None
    try:
        result = _rpc("voicecall.status", params)
    except ServerUnavailable:
        result, note = _run(_status_from_store(call_id, full))
    _print_status(result, call_id, note)


async def _status_from_store(call_id: str | None, full: bool) -> tuple[dict[str, Any], str]:
    from voice_call.store.factory import sqlite_path
    from voice_call.store.sqlite import SqliteStore

    settings = _settings()
    config = settings.config()
    path = sqlite_path(config, settings.home())
    if config.store.backend != "sqlite":
        raise VoiceCallError(
            f"no server is running and the {config.store.backend} store cannot be read "
            "offline — start one with `voicecall serve`"
        )
    note = f"No server is running: read {path} read-only (start one with `voicecall serve`)."
    try:
        store = await SqliteStore.open_readonly(path)
    except FileNotFoundError:
        empty: dict[str, Any] = {"found": False} if call_id else {"found": True, "calls": []}
        return empty, f"No server is running and there is no call store at {path} yet."
    try:
        if call_id:
            record = await store.get(call_id)
            if record is None:
                return {"found": False}, note
            return {"found": True, "call": record.wire() if full else record.summary()}, note
        calls = await store.list_active()
        note += " Calls listed as active are reconciled with the carrier when a server starts."
        return {
            "found": True,
            "calls": [r.wire() if full else r.summary() for r in calls],
        }, note
    finally:
        await store.close()


def _print_status(result: dict[str, Any], call_id: str | None, note: str | None) -> None:
    if note:
        click.echo(note, err=True)
    if _settings().as_json:
        _print_json(result)
        if call_id and not result.get("found"):
            raise click.exceptions.Exit(EXIT_FAILURE)
        return
    from voice_call.cli.output import calls_table, print_call

    console = _console()
    if call_id:
        if not result.get("found"):
            raise _fail(f"no call with id {call_id!r}")
        print_call(console, result["call"])
        return
    calls = result.get("calls") or []
    if not calls:
        console.print("No active calls.")
        return
    console.print(calls_table(calls))


# --------------------------------------------------------------------------- tail


@cli.command()
@_json_flag
@click.option(
    "--since",
    "last",
    type=click.IntRange(min=0, max=10_000),
    default=25,
    show_default=True,
    help="Print this many past events first (0: only new ones).",
)
@click.option("--call-id", help="Only this call's events.")
@_reported
def tail(last: int, call_id: str | None) -> None:
    """Print recent events, then follow live ones (Ctrl-C stops)."""
    with contextlib.suppress(KeyboardInterrupt):
        _run(_tail(last, call_id))


async def _tail(last: int, call_id: str | None) -> None:
    from voice_call.client.rpc import RpcClient

    settings = _settings()
    client = RpcClient.from_home(settings.config(), settings.home())
    console = None if settings.as_json else _console()
    async for event in client.events(last=last or None, call_id=call_id):
        if console is None:
            sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            from voice_call.cli.output import event_line

            console.print(event_line(event))
    click.echo("The event stream ended (the server stopped).", err=True)


# --------------------------------------------------------------------------- demo


@cli.command()
@_reported
def demo() -> None:
    """Run a simulated call end to end (no carrier, no keys needed).

    Nothing is saved: the demo uses a temporary state folder and leaves ~/.voicecall alone.
    """
    from voice_call.cli.demo import run_demo

    code = _run(run_demo(_console()))
    if code:
        raise click.exceptions.Exit(code)


# --------------------------------------------------------------------------- config


@cli.group(name="config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command(name="check")
@_json_flag
def config_check() -> None:
    """Validate the config and print it with secrets redacted (exit 2 when invalid)."""
    from voice_call.config import ConfigError, default_config_path, load_config, redacted

    settings = _settings()
    path = Path(settings.config_path) if settings.config_path else default_config_path()
    try:
        config = load_config(settings.config_path)
    except ConfigError as exc:
        if settings.as_json:
            _print_json({"ok": False, "path": str(exc.source or path), "errors": exc.errors})
        else:
            _print_config_errors(exc)
        raise click.exceptions.Exit(EXIT_USAGE) from None
    source = str(path) if path.exists() else None
    effective = redacted(config)
    if settings.as_json:
        _print_json({"ok": True, "path": source, "warnings": config.warnings, "config": effective})
        return
    for warning in config.warnings:
        click.echo(f"warning: {warning}", err=True)
    where = source or f"no file at {path}; defaults"
    click.echo(f"Config OK ({where}). Effective config, secrets redacted:")
    _print_json(effective)


# --------------------------------------------------------------------------- tool schema


@cli.command(name="tool-schema")
def tool_schema_cmd() -> None:
    """Print the agent tool's JSON schema (OpenAI function shape)."""
    from voice_call.agent.tool import tool_schema

    _print_json(tool_schema())


def main() -> None:
    cli(prog_name="voicecall")


if __name__ == "__main__":
    main()
