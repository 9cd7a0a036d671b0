"""What every `voicecall` command module shares; a command module imports from here only.

- `RootSettings` (the root options, on the root click context) and `root_settings()`;
  `RootSettings.config()` is the one guard that refuses every command needing the service
  while the config says `enabled: false` (`ServiceDisabled`);
- `json_flag` and `accept_root_options`: `--json` and `--config` are accepted after the command
  too (`voicecall status --json --config f.json5`) as well as before it;
- `reported`: expected errors become a message on stderr and an exit code, never a traceback;
  `fail` and `print_config_errors` print the same way;
- `print_json`, `rich_console()` (built in `output.py`) and `run()` (a coroutine to the end).

Exit codes: 0 ok; 1 (`EXIT_FAILURE`) the command failed (server not running, call not found,
carrier error, …); 2 (`EXIT_USAGE`) the request itself was wrong (usage error, invalid config,
invalid input such as a number that is not E.164).

`main.py` imports this module for `voicecall --help`, so only click, json and the error classes
load at the top; rich, asyncio, httpx, pydantic and the config load inside the functions.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from voice_call.cli.i18n import _, localize_config_error
from voice_call.errors import InvalidInput, Unavailable, VoiceCallError

if TYPE_CHECKING:
    from rich.console import Console

    from voice_call.config import Config, ConfigError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILURE = 1
EXIT_USAGE = 2


class ServiceDisabled(Unavailable):
    """The config switches the service off (`enabled: false`): a command that needs it refuses."""


@dataclass
class RootSettings:
    """The root group's options for this invocation (`--config`, `--json`)."""

    config_path: str | None
    as_json: bool

    def config(self, *, service: bool = True) -> Config:
        """The config; with `service` (the default) a disabled service is refused here, before
        the command tries anything. `service=False` is for commands that only read files."""
        from voice_call.config import load_config

        config = load_config(self.config_path)
        if service and not config.enabled:
            raise ServiceDisabled(self.disabled_reason())
        return config

    def config_file(self) -> Path:
        from voice_call.config import default_config_path

        return Path(self.config_path).expanduser() if self.config_path else default_config_path()

    def disabled_switch(self) -> str:
        """Which switch turns the service off, and where: `enabled is false in <file>`."""
        from voice_call.config import ConfigError
        from voice_call.config.load import read_json5

        path = self.config_file()
        switch = "enabled"
        try:
            entry = read_json5(path)["plugins"]["entries"]["voice-call"]
            if entry.get("enabled") is False:
                switch = 'plugins.entries["voice-call"].enabled'
        except (ConfigError, LookupError, TypeError, AttributeError):
            pass  # not an OpenClaw file: the top-level switch
        return f"{switch} is false in {path}"

    def disabled_reason(self) -> str:
        """One sentence: the service is off, which switch in which file, and how to turn it on."""
        ctx = click.get_current_context(silent=True)
        name = ctx.command_path.partition(" ")[2] if ctx is not None else ""  # less the program
        command = f"`voicecall {name}`" if name else "this command"
        return (
            f"the voice-call service is switched off ({self.disabled_switch()}) — set it to "
            f"true to use {command}"
        )

    def home(self) -> Path:
        from voice_call.config import state_home

        return state_home()


def root_settings() -> RootSettings:
    """The `RootSettings` of the running `voicecall` invocation."""
    settings = click.get_current_context().find_object(RootSettings)
    if settings is None:
        raise click.UsageError(_("run this command through `voicecall`"))
    return settings


def _settings(ctx: click.Context) -> RootSettings:
    settings = ctx.find_object(RootSettings)
    if settings is None:
        raise click.UsageError(_("run this command through `voicecall`"))
    return settings


def _set_json(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value:
        _settings(ctx).as_json = True


def _set_config(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
    if value is not None:  # no envvar here: an explicit root --config must not be overridden
        _settings(ctx).config_path = value


def _json_option() -> click.Option:
    return click.Option(
        ["--json"],
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help=_("Print machine-readable JSON."),
    )


def _config_option() -> click.Option:
    return click.Option(
        ["--config"],
        type=click.Path(dir_okay=False),
        expose_value=False,
        callback=_set_config,
        help=_("Config file (JSON5), as `voicecall --config`."),
    )


def json_flag(fn: Callable[P, R]) -> Callable[P, R]:
    """`--json` on a command: the same switch as the root's `--json`, placed after the command."""
    option = click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help=_("Print machine-readable JSON."),
    )
    return option(fn)


def accept_root_options(command: click.Command) -> click.Command:
    """Give `command` (and a group's subcommands) the root's `--config` and `--json`, so they
    work after the command name as well as before it."""
    names = {name for param in command.params for name in param.opts}
    if "--config" not in names:
        command.params.append(_config_option())
    if "--json" not in names:
        command.params.append(_json_option())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_root_options(sub)
    return command


def run(coro: Coroutine[Any, Any, R]) -> R:
    """Run one coroutine to the end, as a command's body.

    SIGTERM (what process managers send) stops it as Ctrl-C does: the coroutine is cancelled,
    its clean-up runs, and KeyboardInterrupt is raised here, which the long-running commands
    already treat as a clean stop. It works with SIGINT ignored (`nohup`, a background job).
    """
    import asyncio  # not at the top: it alone costs ~35 ms of start-up

    terminated: list[bool] = []
    try:
        return asyncio.run(_stopped_by_sigterm(coro, terminated))
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt from None
        raise


async def _stopped_by_sigterm(coro: Coroutine[Any, Any, R], terminated: list[bool]) -> R:
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def on_sigterm() -> None:
        terminated.append(True)
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
        return await coro
    try:
        return await coro
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def fail(message: str, code: int = EXIT_FAILURE) -> click.exceptions.Exit:
    """Print `Error: message` on stderr; raise the returned Exit to leave with `code`."""
    click.echo(_("Error: {message}").format(message=message), err=True)
    return click.exceptions.Exit(code)


def reported(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn expected errors into a message on stderr and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except VoiceCallError as exc:
            code = EXIT_USAGE if isinstance(exc, InvalidInput) else EXIT_FAILURE
            raise fail(exc.message, code) from None
        except Exception as exc:
            from voice_call.config import ConfigError

            if isinstance(exc, ConfigError):
                print_config_errors(exc)
                raise click.exceptions.Exit(EXIT_USAGE) from None
            raise

    return wrapper


def print_config_errors(exc: ConfigError) -> None:
    if exc.source:
        click.echo(_("Error: invalid config in {file}:").format(file=exc.source), err=True)
    else:
        click.echo(_("Error: invalid config:"), err=True)
    for line in exc.errors:
        click.echo(f"  {localize_config_error(line)}", err=True)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def rich_console() -> Console:
    """The rich console commands print to (stdout; see `output.make_console`)."""
    from voice_call.cli.output import make_console

    return make_console()
