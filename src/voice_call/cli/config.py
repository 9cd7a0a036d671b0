"""`voicecall config check` and `voicecall tool-schema`: print what the config and the agent
tool look like, without a server.
"""

from __future__ import annotations

from pathlib import Path

import click

from voice_call.cli.common import (
    EXIT_USAGE,
    json_flag,
    print_config_errors,
    print_json,
    root_settings,
)
from voice_call.cli.i18n import _


@click.group(name="config", help=_("Inspect the configuration."))
def config_group() -> None:
    pass


@config_group.command(
    name="check",
    help=_("Validate the config and print it with secrets redacted (exit 2 when invalid)."),
)
@json_flag
def config_check() -> None:
    from voice_call.config import ConfigError, default_config_path, load_config, redacted

    settings = root_settings()
    path = Path(settings.config_path) if settings.config_path else default_config_path()
    try:
        config = load_config(settings.config_path)
    except ConfigError as exc:
        if settings.as_json:
            print_json({"ok": False, "path": str(exc.source or path), "errors": exc.errors})
        else:
            print_config_errors(exc)
        raise click.exceptions.Exit(EXIT_USAGE) from None
    source = str(path) if path.exists() else None
    effective = redacted(config)
    if settings.as_json:
        body = {"ok": True, "path": source, "enabled": config.enabled}
        print_json({**body, "warnings": config.warnings, "config": effective})
        return
    for warning in config.warnings:
        click.echo(_("warning: {warning}").format(warning=warning), err=True)
    where = source or _("no file at {path}; defaults").format(path=path)
    click.echo(_("Config OK ({where}). Effective config, secrets redacted:").format(where=where))
    print_json(effective)
    if not config.enabled:  # valid, but every command that needs the service refuses
        click.echo(
            _(
                "The service is disabled ({switch}): `voicecall serve` and the call commands "
                "refuse until it is true."
            ).format(switch=settings.disabled_switch())
        )


@click.command(
    name="tool-schema", help=_("Print the agent tool's JSON schema (OpenAI function shape).")
)
def tool_schema() -> None:
    from voice_call.agent.tool import tool_schema as schema

    print_json(schema())
