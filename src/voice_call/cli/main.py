"""The `voicecall` root group: its options, the table of commands, and `main()`.

Every command lives in the module of its group and is imported only when it runs:

| module | commands |
|---|---|
| `call.py` | call, continue, speak, dtmf, end, transfer, status, tail |
| `serve.py` | serve |
| `demo.py` | demo (and the simulated call it runs) |
| `config.py` | config check, tool-schema |
| `setup.py` | setup, smoke (the checks are in `setup_checks.py`) |
| `sim.py`, `expose.py`, `latency.py`, `mcp.py` | sim, expose, latency, mcp |
| `console.py` | console |

What the modules share (root settings, `--json`, error → exit code, the console) is in
`common.py`; rich rendering is in `output.py`. `--config` and `--json` are accepted after any
command as well as before it (`LazyGroup` gives each command both).

Every operational command talks to a running `voicecall serve` over JSON-RPC, so there is only
ever one webhook server (the seed's EADDRINUSE bugs came from commands starting their own).

Start-up time matters (`voicecall --help` should feel instant), so this module imports only
click and `common.py`; a command's module, and with it rich, httpx, pydantic, the config and
the server, loads when that command runs. The short help of each command is written in
`COMMANDS` for the same reason.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from voice_call import __version__
from voice_call.cli import i18n
from voice_call.cli.common import RootSettings, accept_root_options
from voice_call.cli.i18n import _

# click reads help texts when a command is defined: choose the language before any of them
i18n.activate(i18n.choose(sys.argv[1:], os.environ))

# name → ("module:attribute", short help for `voicecall --help`), one line per command.
COMMANDS: dict[str, tuple[str, str]] = {
    "call": ("voice_call.cli.call:call", _("Place an outbound call.")),
    "config": ("voice_call.cli.config:config_group", _("Inspect the configuration.")),
    "console": (
        "voice_call.cli.console:console",
        _("Open the web console of the running server (one-time login link)."),
    ),
    "continue": (
        "voice_call.cli.call:continue_",
        _("Say something, then wait for and print the caller's reply."),
    ),
    "demo": (
        "voice_call.cli.demo:demo",
        _("Run a simulated call end to end (no carrier, no keys needed)."),
    ),
    "dtmf": ("voice_call.cli.call:dtmf", _("Send touch-tone digits on a call.")),
    "end": ("voice_call.cli.call:end", _("Hang up a call.")),
    "expose": ("voice_call.cli.expose:expose", _("Expose the webhook on Tailscale funnel/serve.")),
    "latency": (
        "voice_call.cli.latency:latency",
        _("Per-turn latency p50/p95/p99 from the store."),
    ),
    "mcp": ("voice_call.cli.mcp:mcp", _("Serve the voice_call tools over MCP (stdio or --http).")),
    "serve": (
        "voice_call.cli.serve:serve",
        _("Run the webhook, JSON-RPC and event server (Ctrl-C stops)."),
    ),
    "setup": ("voice_call.cli.setup:setup", _("Check config, credentials, exposure and keys.")),
    "sim": ("voice_call.cli.sim:sim", _("Run a Twilio, Telnyx or Plivo emulator on loopback.")),
    "smoke": (
        "voice_call.cli.setup:smoke",
        _("Run the setup checks, then optionally one real call."),
    ),
    "start": ("voice_call.cli.call:call", _("Place an outbound call (alias of call).")),
    "transfer": (
        "voice_call.cli.call:transfer",
        _("Transfer a call to a person (cold or --warm)."),
    ),
    "speak": (
        "voice_call.cli.call:speak",
        _("Say something on a call without waiting for a reply."),
    ),
    "status": ("voice_call.cli.call:status", _("Show active calls, or one call's details.")),
    "tail": (
        "voice_call.cli.call:tail",
        _("Print recent events, then follow live ones (Ctrl-C stops)."),
    ),
    "tool-schema": (
        "voice_call.cli.config:tool_schema",
        _("Print the agent tool's JSON schema (OpenAI function shape)."),
    ),
}


class LazyGroup(click.Group):
    """A group whose commands are imported from `COMMANDS` when first looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, _, attr = COMMANDS[cmd_name][0].partition(":")
            command = getattr(importlib.import_module(module), attr)
            self.add_command(accept_root_options(command), cmd_name)
        return super().get_command(ctx, cmd_name)

    # click words its own headings in English: the root's help says them through the catalog
    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        pieces = " ".join(self.collect_usage_pieces(ctx))
        formatter.write_usage(ctx.command_path, pieces, prefix=_("Usage:") + " ")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records = [record for p in self.get_params(ctx) if (record := p.get_help_record(ctx))]
        if records:
            with formatter.section(_("Options")):
                formatter.write_dl(records)
        self.format_commands(ctx, formatter)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section(_("Commands")):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


def _set_language(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """`--lang`: messages worded from now on use it; the previous language comes back when
    this invocation ends (matters only in-process, as under click's CliRunner)."""
    if value is not None:
        previous = i18n.activate(value)
        ctx.call_on_close(lambda: i18n.activate(previous))


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=_(
        "Place and control phone calls for AI agents (Twilio, Telnyx, Plivo, or a local mock).\n"
        "\n"
        "Start a server with `voicecall serve`, then drive calls from another shell. Try "
        "`voicecall demo` for a complete simulated call with no setup."
    ),
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="VOICECALL_CONFIG",
    help=_("Config file (JSON5). Default: $VOICECALL_CONFIG or ~/.voicecall/config.json5."),
)
@click.option("--json", "as_json", is_flag=True, help=_("Print machine-readable JSON."))
@click.option(
    "--lang",
    type=click.Choice(i18n.CHOICES, case_sensitive=False),
    metavar="[en|zh-TW]",
    expose_value=False,
    is_eager=True,
    callback=_set_language,
    help=_("Language of messages (en or zh-TW). Default: from LC_ALL / LC_MESSAGES / LANG."),
)
@click.version_option(__version__, prog_name="voicecall", help=_("Show the version and exit."))
@click.help_option("-h", "--help", help=_("Show this message and exit."))
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, as_json: bool) -> None:
    # the help text is above, in `help=`, so that it can be translated
    ctx.obj = RootSettings(config_path, as_json)


def main() -> None:
    try:
        cli(prog_name="voicecall")
    except SystemExit as exc:
        if "ngrok" in sys.modules:
            _exit_now(exc.code)
        raise


def _exit_now(code: object) -> None:
    """Leave without interpreter finalisation. The ngrok SDK's native threads may still hold
    Python objects a moment after a session failed or closed; finalising under them crashes
    the process (SIGSEGV/abort instead of the exit code and message just printed)."""
    import contextlib
    import logging

    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # what the interpreter would print for sys.exit("…")
    logging.shutdown()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


if __name__ == "__main__":
    main()
