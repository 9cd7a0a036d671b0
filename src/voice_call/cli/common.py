"""The root command's settings, for the command groups in their own modules (`setup`, `expose`).

They are found on the root click context by shape, not by class, so a command module never
imports the root group back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import click

P = ParamSpec("P")
R = TypeVar("R")


def root_settings() -> Any:
    """`voice_call.cli.main.Settings` of this invocation: config_path, as_json, config(), home()."""
    obj = click.get_current_context().find_root().obj
    if obj is None or not hasattr(obj, "config_path"):
        raise click.UsageError("run this command through `voicecall`")
    return obj


def json_flag(fn: Callable[P, R]) -> Callable[P, R]:
    """`--json` after the command too (`voicecall setup --json`), same as before it."""

    def set_json(ctx: click.Context, _: click.Parameter, value: bool) -> None:
        if value:
            ctx.find_root().obj.as_json = True

    option = click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=set_json,
        help="Print machine-readable JSON.",
    )
    return option(fn)
