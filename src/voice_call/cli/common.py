"""What every `voicecall` command module shares; a command module imports from here only.

- `RootSettings` (the root options, on the root click context) and `root_settings()`;
- `json_flag`: the one `--json` option, accepted after the command too (`voicecall status
  --json`) as well as before it (`voicecall --json status`);
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

from voice_call.errors import InvalidInput, VoiceCallError

if TYPE_CHECKING:
    from rich.console import Console

    from voice_call.config import Config, ConfigError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILURE = 1
EXIT_USAGE = 2


@dataclass
class RootSettings:
    """The root group's options for this invocation (`--config`, `--json`)."""

    config_path: str | None
    as_json: bool

    def config(self) -> Config:
        from voice_call.config import load_config

        return load_config(self.config_path)

    def home(self) -> Path:
        from voice_call.config import state_home

        return state_home()


def root_settings() -> RootSettings:
    """The `RootSettings` of the running `voicecall` invocation."""
    settings = click.get_current_context().find_object(RootSettings)
    if settings is None:
        raise click.UsageError("run this command through `voicecall`")
    return settings


def json_flag(fn: Callable[P, R]) -> Callable[P, R]:
    """`--json` on a command: the same switch as the root's `--json`, placed after the command."""

    def set_json(ctx: click.Context, _: click.Parameter, value: bool) -> None:
        if value:
            settings = ctx.find_object(RootSettings)
            if settings is None:
                raise click.UsageError("run this command through `voicecall`")
            settings.as_json = True

    option = click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=set_json,
        help="Print machine-readable JSON.",
    )
    return option(fn)


def run(coro: Coroutine[Any, Any, R]) -> R:
    """Run one coroutine to the end, as a command's body."""
    import asyncio  # not at the top: it alone costs ~35 ms of start-up

    return asyncio.run(coro)


def fail(message: str, code: int = EXIT_FAILURE) -> click.exceptions.Exit:
    """Print `Error: message` on stderr; raise the returned Exit to leave with `code`."""
    click.echo(f"Error: {message}", err=True)
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
    where = f" in {exc.source}" if exc.source else ""
    click.echo(f"Error: invalid config{where}:", err=True)
    for line in exc.errors:
        click.echo(f"  {line}", err=True)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def rich_console() -> Console:
    """The rich console commands print to (stdout; see `output.make_console`)."""
    from voice_call.cli.output import make_console

    return make_console()
