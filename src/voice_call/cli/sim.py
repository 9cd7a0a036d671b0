"""`voicecall sim twilio|telnyx|plivo`: run a carrier emulator a real config can point at.

The emulator listens on loopback, answers the carrier's REST API, dials a simulated callee who
says the scripted lines, and signs its webhooks exactly as the carrier does, so a user can
develop offline with the same config shape they will use against the real carrier.

`voicecall sim <carrier> call-in --from N` makes the running emulator ring the app's webhook
with an inbound call, through the emulator's loopback control endpoint (`sim/control.py`). The
running sim records its URL in `<state folder>/sim/<carrier>.json`, so call-in finds it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import click

from voice_call.cli.common import EXIT_USAGE, fail, json_flag, print_json, root_settings, run
from voice_call.cli.i18n import _

DEFAULT_TWILIO_SID = "AC" + "0" * 32
DEFAULT_TOKEN = "sim-auth-token"
DEFAULT_PLIVO_ID = "MA" + "0" * 18
DEFAULT_TELNYX_KEY = "KEYsim"
DEFAULT_APP_NUMBER = "+15550001234"  # the number an inbound call rings, as in the README
CARRIERS = click.Choice(["twilio", "telnyx", "plivo"])


def _script(answer_delay_ms: int, reply_delay_ms: int, replies: tuple[str, ...]) -> Any:
    from voice_call.sim.callee import CalleeScript

    return CalleeScript(
        answer_delay_ms=answer_delay_ms,
        reply_delay_ms=reply_delay_ms,
        replies=replies or ("Hi, this is the simulated callee.", "Yes, that works.", "Bye!"),
        hangup_after_turns=len(replies) if replies else 3,
    )


def _build(
    carrier: str, port: int, inbound_url: str | None, hangup_url: str | None, script: Any
) -> tuple[Any, dict[str, Any]]:
    """The emulator and the config block that points a provider at it."""
    if carrier == "twilio":
        from voice_call.sim.twilio import TwilioEmulator

        emu: Any = TwilioEmulator(
            DEFAULT_TWILIO_SID,
            DEFAULT_TOKEN,
            script,
            voice_url=inbound_url,
            status_callback=inbound_url,
            port=port,
        )
        block = {"accountSid": DEFAULT_TWILIO_SID, "authToken": DEFAULT_TOKEN}
    elif carrier == "telnyx":
        from voice_call.sim.telnyx import TelnyxEmulator

        emu = TelnyxEmulator(DEFAULT_TELNYX_KEY, webhook_url=inbound_url, script=script, port=port)
        block = {"apiKey": DEFAULT_TELNYX_KEY, "connectionId": "sim-connection"}
    else:
        from voice_call.sim.plivo import PlivoEmulator

        emu = PlivoEmulator(
            DEFAULT_PLIVO_ID,
            DEFAULT_TOKEN,
            script,
            answer_url=inbound_url,
            hangup_url=hangup_url or inbound_url,
            port=port,
        )
        block = {"authId": DEFAULT_PLIVO_ID, "authToken": DEFAULT_TOKEN}
    return emu, block


def _inbound_setup(carrier: str, emu: Any) -> dict[str, Any]:
    """Where the emulated number sends an inbound call: what the carrier's console would hold."""
    if carrier == "twilio":
        return {"voiceUrl": emu.voice_url, "statusCallback": emu.status_callback}
    if carrier == "telnyx":
        return {"webhookUrl": emu.webhook_url}
    return {
        "answerUrl": emu.answer.url if emu.answer else None,
        "hangupUrl": emu.on_hangup.url if emu.on_hangup else None,
    }


def _state_file(carrier: str) -> Path:
    return root_settings().home() / "sim" / f"{carrier}.json"


@contextlib.contextmanager
def _recorded(carrier: str, url: str) -> Any:
    """Record the running emulator's URL for `call-in`; forget it when the emulator stops."""
    path = _state_file(carrier)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": url, "pid": os.getpid()}), encoding="utf-8")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                path.unlink()


async def _serve_emulator(carrier: str, emu: Any, block: dict[str, Any], as_json: bool) -> None:
    async with emu:
        block["apiBaseUrl"] = emu.api_base if carrier == "telnyx" else emu.url
        if carrier == "telnyx":
            block["publicKey"] = emu.public_key
        info = {
            "carrier": carrier,
            "url": emu.url,
            "config": {"provider": carrier, carrier: block},
            "inbound": _inbound_setup(carrier, emu),
        }
        with _recorded(carrier, emu.url):
            if as_json:
                click.echo(json.dumps(info), nl=True)
            else:
                _print_instructions(carrier, info)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()


def _print_instructions(carrier: str, info: dict[str, Any]) -> None:
    click.echo(
        _("{carrier} emulator listening on {url} (Ctrl-C stops)").format(
            carrier=carrier, url=info["url"]
        )
    )
    click.echo(_("Put this in your config (JSON5) to use it:"))
    click.echo(json.dumps(info["config"], indent=2))
    inbound = info["inbound"]
    if not any(inbound.values()):
        click.echo(_("No --inbound-url: inbound calls (`call-in`) need your webhook URL."))
        return
    rung = ", ".join(f"{k} {v}" for k, v in inbound.items() if v)
    click.echo(_("Inbound calls ring: {urls}").format(urls=rung))
    click.echo(
        _("Place one with: voicecall sim {carrier} call-in --from +15550001111").format(
            carrier=carrier
        )
    )


EMULATOR_OPTIONS = (
    "port",
    "inbound_url",
    "hangup_url",
    "answer_delay_ms",
    "reply_delay_ms",
    "replies",
)


@click.command(
    help=_(
        "Run a Twilio, Telnyx or Plivo emulator on loopback (offline development).\n\n"
        "`voicecall sim CARRIER call-in --from N [--to N]` makes the running emulator ring "
        "your\nwebhook with an inbound call, signed as the carrier signs it."
    )
)
@click.argument("carrier", type=CARRIERS)
@click.argument("action", type=click.Choice(["call-in"]), required=False)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help=_("Port on 127.0.0.1 (0 picks a free one)."),
)
@click.option("--inbound-url", help=_("Your webhook URL, for calls placed to you (inbound)."))
@click.option(
    "--hangup-url",
    help=_("Plivo only: the application's hangup URL (default: the --inbound-url)."),
)
@click.option("--answer-delay-ms", type=click.IntRange(0, 600_000), default=1000, show_default=True)
@click.option("--reply-delay-ms", type=click.IntRange(0, 600_000), default=800, show_default=True)
@click.option("--reply", "replies", multiple=True, help=_("A line the callee says (repeatable)."))
@click.option("--from", "from_number", help=_("call-in: the caller's number (E.164)."))
@click.option(
    "--to",
    "to_number",
    help=_("call-in: your number the caller dials (E.164). Default: {number}.").format(
        number=DEFAULT_APP_NUMBER
    ),
)
@click.option(
    "--sim-url",
    help=_("call-in: the running emulator's URL (default: the one it recorded)."),
)
@json_flag
@click.pass_context
def sim(
    ctx: click.Context,
    carrier: str,
    action: str | None,
    port: int,
    inbound_url: str | None,
    hangup_url: str | None,
    answer_delay_ms: int,
    reply_delay_ms: int,
    replies: tuple[str, ...],
    from_number: str | None,
    to_number: str | None,
    sim_url: str | None,
) -> None:
    if action == "call-in":
        given = [
            p.opts[0]
            for p in ctx.command.params
            if p.name in EMULATOR_OPTIONS and _given(ctx, p.name)
        ]
        if given:
            raise fail(
                _(
                    "{option} sets up the emulator, not call-in: give it to "
                    "`voicecall sim {carrier}` itself"
                ).format(option=given[0], carrier=carrier),
                EXIT_USAGE,
            )
        if not from_number:
            raise fail(_("call-in needs the caller's number: add --from +15550001111"), EXIT_USAGE)
        _call_in(carrier, from_number, to_number or DEFAULT_APP_NUMBER, sim_url)
        return
    for name, value in (("--from", from_number), ("--to", to_number), ("--sim-url", sim_url)):
        if value is not None:
            raise fail(
                _("{option} is for call-in: `voicecall sim {carrier} call-in {option} …`").format(
                    option=name, carrier=carrier
                ),
                EXIT_USAGE,
            )
    for flag, url in (("--inbound-url", inbound_url), ("--hangup-url", hangup_url)):
        if url is not None and not url.startswith(("http://", "https://")):
            raise fail(
                _(
                    "{option} must be an http(s) URL, e.g. http://127.0.0.1:3399/voice/webhook"
                ).format(option=flag),
                EXIT_USAGE,
            )
    if hangup_url and carrier != "plivo":
        raise fail(
            _("--hangup-url is for Plivo only: leave it out for {carrier}").format(carrier=carrier),
            EXIT_USAGE,
        )
    script = _script(answer_delay_ms, reply_delay_ms, replies)
    emu, block = _build(carrier, port, inbound_url, hangup_url, script)
    with contextlib.suppress(KeyboardInterrupt):
        run(_serve_emulator(carrier, emu, block, root_settings().as_json))


def _given(ctx: click.Context, name: str | None) -> bool:
    source = ctx.get_parameter_source(name) if name else None
    return source is not None and source != click.core.ParameterSource.DEFAULT


def _running_sim_url(carrier: str) -> str:
    path = _state_file(carrier)
    try:
        url = json.loads(path.read_text(encoding="utf-8"))["url"]
    except (OSError, ValueError, KeyError, TypeError):
        raise fail(
            _(
                "no running `voicecall sim {carrier}` is recorded in {file}: start one, "
                "or pass --sim-url with the URL it printed"
            ).format(carrier=carrier, file=path),
        ) from None
    return str(url)


def _call_in(carrier: str, from_number: str, to_number: str, sim_url: str | None) -> None:
    """Ask the running emulator's control endpoint to ring the app, and say what it did."""
    import httpx

    base = (sim_url or _running_sim_url(carrier)).rstrip("/")
    try:
        response = httpx.post(
            f"{base}/_sim/calls", json={"from": from_number, "to": to_number}, timeout=15
        )
    except httpx.HTTPError as exc:
        raise fail(
            _(
                "could not reach the {carrier} emulator at {url} ({error}): "
                "is `voicecall sim {carrier}` still running?"
            ).format(carrier=carrier, url=base, error=type(exc).__name__)
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 201 or not isinstance(body, dict):
        reason = body.get("error") if isinstance(body, dict) else None
        code = EXIT_USAGE if response.status_code in (400, 409) else 1
        answered = _("the emulator at {url} answered HTTP {status}").format(
            url=base, status=response.status_code
        )
        raise fail(reason or answered, code)
    call = body["call"]
    if root_settings().as_json:
        print_json(call)
    else:
        click.echo(
            _("Ringing {to} from {caller}: call {call_id}").format(
                to=call["to"], caller=call["from"], call_id=call["id"]
            )
        )
