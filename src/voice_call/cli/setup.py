"""`voicecall setup` and `voicecall smoke`: catch a broken setup before a real call is paid for.

`setup` prints one line per named check (`OK <check>: …`, `FAIL <check>: <how to fix>`,
`SKIP <check>: …`) or `--json` `{ok, checks[]}`, and exits 1 on any FAIL. `smoke` runs the same
checks; unless both `--to` and `--yes` are given it stops there (a dry run places nothing).
With both, it places one call through the running server (RPC), follows its events until it
ends, and reports how it went: `{ok, setup, liveCall, wouldCall?, callId?, outcome?}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import click

from voice_call.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    json_flag,
    print_json,
    reported,
    root_settings,
    run,
)
from voice_call.cli.i18n import _

DEFAULT_MESSAGE = "This is a voice call smoke test. Everything works. Goodbye."
DEFAULT_WAIT_S = 120.0
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")


def _e164(value: str | None) -> str | None:
    from voice_call.errors import InvalidInput
    from voice_call.models import E164

    if value is None:
        return None
    compact = _PHONE_SEPARATORS.sub("", value)
    if not E164.fullmatch(compact):
        raise InvalidInput(f"--to {value!r} is not an E.164 number — write it like +15550001234")
    return compact


def _print_checks(report: Any) -> None:
    for check in report.checks:
        click.echo(check.line())


@click.command(
    help=_(
        "Check config, credentials, webhook exposure, speech keys and responder (exit 1 on "
        "FAIL).\n\nThe webhook-reachable check requests the public webhook URL from this "
        "machine, so run it with `voicecall serve` running."
    )
)
@json_flag
@reported
def setup() -> None:
    from voice_call.cli.setup_checks import run_checks

    settings = root_settings()
    report = run(run_checks(settings.config_path, settings.home()))
    if settings.as_json:
        print_json(report.wire())
    else:
        _print_checks(report)
    if not report.ok:
        raise click.exceptions.Exit(1)


@click.command(
    help=_(
        "Run the setup checks; with --to and --yes, place one short call and report it.\n\n"
        "With --json the output is JSON whatever happens, refusals and failures included."
    )
)
@json_flag
@click.option("-t", "--to", help=_("Number to call (E.164) for the live call."))
@click.option(
    "--message", default=DEFAULT_MESSAGE, show_default=True, help=_("What the call says.")
)
@click.option(
    "--mode",
    type=click.Choice(["notify", "conversation"]),
    default="notify",
    show_default=True,
    help=_("notify: say the message and hang up; conversation: say it, then smoke hangs up."),
)
@click.option(
    "--yes", is_flag=True, help=_("Really place the call (a real carrier charges for it).")
)
@click.option(
    "--wait",
    type=click.FloatRange(1, 3600),
    default=DEFAULT_WAIT_S,
    show_default=True,
    help=_("Seconds to wait for the call to end (then smoke hangs it up)."),
)
def smoke(to: str | None, message: str, mode: str, yes: bool, wait: float) -> None:
    # the help text is in `help=` above, so that it can be translated
    settings = root_settings()
    try:
        result, text, code = _smoke(to, message, mode, yes, wait)
    except SmokeRefused as exc:
        if settings.as_json:
            print_json({"ok": False, "liveCall": False, "error": exc.message})
        else:
            click.echo(_("Error: {message}").format(message=exc.message), err=True)
        raise click.exceptions.Exit(exc.code) from None
    if settings.as_json:
        print_json(result)
    else:
        for line in text:
            click.echo(line)
    if not result["ok"]:
        raise click.exceptions.Exit(code)


class SmokeRefused(Exception):
    """Smoke stopped before it could report checks or a call: one message and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def _smoke(
    to: str | None, message: str, mode: str, yes: bool, wait: float
) -> tuple[dict[str, Any], list[str], int]:
    """(the JSON result, the text lines, the exit code when not ok)."""
    from voice_call.cli.setup_checks import run_checks
    from voice_call.config import ConfigError
    from voice_call.errors import VoiceCallError

    settings = root_settings()
    try:
        number = _e164(to)
        settings.config()  # a disabled service refuses before anything is tried
    except ConfigError:
        pass  # the `config` check reports it, with the other checks
    except VoiceCallError as exc:
        raise SmokeRefused(exc.message, _exit_code(exc)) from None
    report = run(run_checks(settings.config_path, settings.home()))
    result: dict[str, Any] = {"ok": report.ok, "setup": report.wire(), "liveCall": False}
    lines = [check.line() for check in report.checks]
    note, code = "live-call: skipped (pass --to and --yes to place one)", EXIT_FAILURE
    if report.ok and number and not yes:
        result["wouldCall"] = number
        note = f"live-call: dry run for {number} (add --yes to place it)"
    elif not report.ok:
        note = "live-call: not placed (fix the FAIL lines first)"
    elif number and yes:
        assert report.config is not None
        from voice_call.client.rpc import RpcClient

        try:
            client = RpcClient.from_home(report.config, settings.home())
            outcome = run(place_call(client, number, message, mode, wait))
        except VoiceCallError as exc:
            result.update(ok=False, error=exc.message)
            return result, [*lines, f"live-call: not placed — {exc.message}"], _exit_code(exc)
        result.update(liveCall=True, callId=outcome["callId"], outcome=outcome)
        result["ok"] = outcome["ok"]
        note = _describe(number, outcome, wait)
    return result, [*lines, note], code


def _exit_code(exc: Exception) -> int:
    from voice_call.errors import InvalidInput

    return EXIT_USAGE if isinstance(exc, InvalidInput) else EXIT_FAILURE


async def place_call(client: Any, to: str, message: str, mode: str, wait: float) -> dict[str, Any]:
    """Initiate through the server, follow the call's events until it ends, then its record.

    The call placed here is never left running: in conversation mode smoke hangs up once the
    message was said, and in any mode when `wait` runs out (or smoke is interrupted).
    """
    started = await client.call("voicecall.initiate", {"to": to, "message": message, "mode": mode})
    call_id = str(started["callId"])
    ended = hung_up = timed_out = False
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                # since=0: this call's whole log, so an end that came before we listened counts
                events = client.events(since=0, call_id=call_id)
                async with contextlib.aclosing(events):
                    async for event in events:
                        if _terminal(event.get("state")):
                            ended = True
                            break
                        if mode == "conversation" and not hung_up and _said(event, message):
                            hung_up = True
                            await client.call("voicecall.end", {"callId": call_id})
    finally:
        if not ended and not hung_up:
            timed_out = True
            with contextlib.suppress(Exception):  # best effort: report what happened anyway
                await client.call("voicecall.end", {"callId": call_id})
    status = await client.call("voicecall.status", {"callId": call_id})
    call = status.get("call") if isinstance(status.get("call"), dict) else {}
    state = call.get("state")
    answered = call.get("answeredAt") is not None
    started_at, ended_at = call.get("startedAt"), call.get("endedAt")
    seconds = (
        round(ended_at - started_at, 1)
        if isinstance(started_at, int | float) and isinstance(ended_at, int | float)
        else None
    )
    return {
        "ok": _terminal(state) and not timed_out and (answered or state == "voicemail"),
        "callId": call_id,
        "ended": _terminal(state),
        "timedOut": timed_out,  # it did not end within --wait: smoke hung it up
        "state": state,
        "endReason": call.get("endReason"),
        "answered": answered,
        "seconds": seconds,
    }


def _said(event: dict[str, Any], message: str) -> bool:
    """The smoke message was said on the call (its `bot.spoke` entry)."""
    data = event.get("data")
    return (
        event.get("type") == "bot.spoke" and isinstance(data, dict) and data.get("text") == message
    )


def _terminal(state: Any) -> bool:
    from voice_call.models import CallState

    try:
        return CallState(state).terminal
    except ValueError:
        return False


def _describe(to: str, outcome: dict[str, Any], wait: float) -> str:
    head = f"live-call: {outcome['callId']} to {to}"
    if outcome["timedOut"] and outcome["ended"]:
        return f"{head} did not end within {wait:g} s, so smoke hung it up (raise --wait)"
    if not outcome["ended"]:
        return (
            f"{head} is still {outcome['state']} — follow it with "
            f"`voicecall tail --call-id {outcome['callId']}`"
        )
    answered = "answered" if outcome["answered"] else "not answered"
    took = f" after {outcome['seconds']} s" if outcome["seconds"] is not None else ""
    return f"{head}: {answered}, ended {outcome['endReason'] or outcome['state']}{took}"
