"""`voicecall sim twilio|telnyx|plivo`: run a carrier emulator a real config can point at.

The emulator listens on loopback, answers the carrier's REST API, dials a simulated callee who
says the scripted lines, and signs its webhooks exactly as the carrier does, so a user can
develop offline with the same config shape they will use against the real carrier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import click

from voice_call.cli.common import json_flag, root_settings, run

DEFAULT_TWILIO_SID = "AC" + "0" * 32
DEFAULT_TOKEN = "sim-auth-token"
DEFAULT_PLIVO_ID = "MA" + "0" * 18
DEFAULT_TELNYX_KEY = "KEYsim"


def _script(answer_delay_ms: int, reply_delay_ms: int, replies: tuple[str, ...]) -> Any:
    from voice_call.sim.callee import CalleeScript

    return CalleeScript(
        answer_delay_ms=answer_delay_ms,
        reply_delay_ms=reply_delay_ms,
        replies=replies or ("Hi, this is the simulated callee.", "Yes, that works.", "Bye!"),
        hangup_after_turns=len(replies) if replies else 3,
    )


def _build(
    carrier: str, port: int, inbound_url: str | None, script: Any
) -> tuple[Any, dict[str, Any]]:
    """The emulator and the config block that points a provider at it."""
    if carrier == "twilio":
        from voice_call.sim.twilio import TwilioEmulator

        emu: Any = TwilioEmulator(
            DEFAULT_TWILIO_SID, DEFAULT_TOKEN, script, voice_url=inbound_url, port=port
        )
        block = {"accountSid": DEFAULT_TWILIO_SID, "authToken": DEFAULT_TOKEN}
    elif carrier == "telnyx":
        from voice_call.sim.telnyx import TelnyxEmulator

        emu = TelnyxEmulator(DEFAULT_TELNYX_KEY, webhook_url=inbound_url, script=script, port=port)
        block = {"apiKey": DEFAULT_TELNYX_KEY, "connectionId": "sim-connection"}
    else:
        from voice_call.sim.plivo import PlivoEmulator

        emu = PlivoEmulator(
            DEFAULT_PLIVO_ID, DEFAULT_TOKEN, script, answer_url=inbound_url, port=port
        )
        block = {"authId": DEFAULT_PLIVO_ID, "authToken": DEFAULT_TOKEN}
    return emu, block


async def _serve_emulator(
    carrier: str, port: int, inbound_url: str | None, script: Any, as_json: bool
) -> None:
    emu, block = _build(carrier, port, inbound_url, script)
    async with emu:
        block["apiBaseUrl"] = emu.url
        if carrier == "telnyx":
            block["publicKey"] = emu.public_key
        info = {"carrier": carrier, "url": emu.url, "config": {"provider": carrier, carrier: block}}
        if as_json:
            click.echo(json.dumps(info), nl=True)
        else:
            click.echo(f"{carrier} emulator listening on {emu.url} (Ctrl-C stops)")
            click.echo("Put this in your config (JSON5) to use it:")
            click.echo(json.dumps(info["config"], indent=2))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


@click.command()
@click.argument("carrier", type=click.Choice(["twilio", "telnyx", "plivo"]))
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port on 127.0.0.1 (0 picks a free one).",
)
@click.option("--inbound-url", help="Your webhook URL, for calls placed to you (inbound).")
@click.option("--answer-delay-ms", type=click.IntRange(0, 600_000), default=1000, show_default=True)
@click.option("--reply-delay-ms", type=click.IntRange(0, 600_000), default=800, show_default=True)
@click.option("--reply", "replies", multiple=True, help="A line the callee says (repeatable).")
@json_flag
def sim(
    carrier: str,
    port: int,
    inbound_url: str | None,
    answer_delay_ms: int,
    reply_delay_ms: int,
    replies: tuple[str, ...],
) -> None:
    """Run a Twilio, Telnyx or Plivo emulator on loopback (offline development)."""
    script = _script(answer_delay_ms, reply_delay_ms, replies)
    with contextlib.suppress(KeyboardInterrupt):
        run(_serve_emulator(carrier, port, inbound_url, script, root_settings().as_json))
