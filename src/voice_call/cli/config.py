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


@click.group(name="config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command(name="check")
@json_flag
def config_check() -> None:
    """Validate the config and print it with secrets redacted (exit 2 when invalid)."""
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
        click.echo(f"warning: {warning}", err=True)
    where = source or f"no file at {path}; defaults"
    click.echo(f"Config OK ({where}). Effective config, secrets redacted:")
    print_json(effective)
    if not config.enabled:  # valid, but every command that needs the service refuses
        click.echo(
            f"The service is disabled ({settings.disabled_switch()}): `voicecall serve` and the "
            "call commands refuse until it is true."
        )


@click.command(name="tool-schema")
def tool_schema() -> None:
    """Print the agent tool's JSON schema (OpenAI function shape)."""
    from voice_call.agent.tool import tool_schema as schema

    print_json(schema())
