"""The call commands: `call` (and its alias `start`), `continue`, `speak`, `dtmf`, `end`,
`transfer`, `status` and `tail`.

Each one is a request to the running `voicecall serve` over JSON-RPC (`client/rpc.py`); `tail`
follows its SSE event stream. `status` and `tail` fall back to reading the call store read-only
when no server answers (`tail` then polls it: `tail_store.py`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from voice_call.cli.common import (
    EXIT_FAILURE,
    fail,
    json_flag,
    print_json,
    reported,
    rich_console,
    root_settings,
    run,
)
from voice_call.cli.i18n import _
from voice_call.errors import VoiceCallError
from voice_call.languages import normalise_tag

if TYPE_CHECKING:
    from voice_call.cli.tail_store import Since


POLL_WAIT_MS = 25_000  # one continue.result wait
MIN_POLL_S = 0.05  # `tail --poll`: the plugin's floor (50 ms)


def rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One JSON-RPC request to the server of this invocation's config and state folder."""
    from voice_call.client.rpc import RpcClient

    settings = root_settings()
    client = RpcClient.from_home(settings.config(), settings.home())
    return client.call_sync(method, params)


def _done(result: dict[str, Any], message: str) -> None:
    if root_settings().as_json:
        print_json(result)
    else:
        click.echo(message)


def _language_tag(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A BCP-47 tag as languages.py spells it; anything else stops here (exit 2)."""
    if value is None:
        return None
    tag = normalise_tag(value)
    if tag is None:
        raise click.BadParameter(
            _("{value!r} is not a language tag: pass a BCP-47 tag like en-US or zh-TW").format(
                value=value
            )
        )
    return tag


@click.command(help=_("Place an outbound call (`start` is the same command)."))
@json_flag
@click.option("-t", "--to", help=_("Number to call (E.164). Default: toNumber from the config."))
@click.option("-m", "--message", required=True, help=_("What to say when the call is answered."))
@click.option(
    "--mode",
    type=click.Choice(["notify", "conversation"]),
    help=_(
        "notify: say the message and hang up; conversation: stay on the line. "
        "Default: outbound.defaultMode of the server's config."
    ),
)
@click.option(
    "--session-key",
    help=_(
        "The memory session this call's conversation belongs to (calls with the same key "
        "share history). Default: from sessionScope."
    ),
)
@click.option(
    "--dtmf-sequence",
    help=_(
        "Keys to press once the callee answers, before the greeting (conversation calls), "
        "e.g. ww1234# to join a conference bridge: 0-9 * #, w = 0.5 s and W = 1 s pauses."
    ),
)
@click.option(
    "--amd",
    type=click.Choice(["detect", "voicemail-drop", "off"]),
    help=_(
        "Answering-machine detection: detect = hang up on a machine (ends as voicemail); "
        "voicemail-drop = leave the message after the beep; off = none. Default: outbound.amd."
    ),
)
@click.option(
    "--record/--no-record",
    default=None,
    help=_("Record this call (or not). Default: recording.enabled of the server's config."),
)
@click.option(
    "--language",
    callback=_language_tag,
    help=_("The language this call is held in (BCP-47, e.g. zh-TW). Default: the config's."),
)
@reported
def call(
    to: str | None,
    message: str,
    mode: str | None,
    session_key: str | None,
    dtmf_sequence: str | None,
    amd: str | None,
    record: bool | None,
    language: str | None,
) -> None:
    params: dict[str, Any] = {"message": message}
    if to:
        params["to"] = to
    if mode:
        params["mode"] = mode
    if session_key is not None:
        params["sessionKey"] = session_key
    if dtmf_sequence is not None:
        params["dtmfSequence"] = dtmf_sequence
    if record is not None:
        params["record"] = record
    if amd is not None:
        params["amd"] = False if amd == "off" else amd
    if language is not None:
        params["language"] = language
    result = rpc("voicecall.initiate", params)
    if root_settings().as_json:
        print_json(result)
        return
    call_id = result.get("callId")
    click.echo(_("Call started: {id}").format(id=call_id))
    click.echo(_("Follow it with: voicecall tail --call-id {id}").format(id=call_id))


@click.command(
    name="continue", help=_("Say something, then wait for and print the caller's reply.")
)
@json_flag
@click.option("--call-id", required=True, help=_("The call's id."))
@click.option("-m", "--message", required=True, help=_("What to say before listening."))
@reported
def continue_(call_id: str, message: str) -> None:
    result = run(_continue(call_id, message))
    if root_settings().as_json:
        print_json(result)
    else:
        click.echo(result.get("transcript", ""))


async def _continue(call_id: str, message: str) -> dict[str, Any]:
    """`continue.start`, then `continue.result` polls of up to POLL_WAIT_MS each: no request
    stays open for the whole turn (a proxy's idle timeout cannot cut it)."""
    from voice_call.client.api import Client
    from voice_call.client.rpc import RpcClient

    settings = root_settings()
    rpc_client = RpcClient.from_home(settings.config(), settings.home())
    client = Client(rpc_client.url, rpc_client.token)
    turn = await client.continue_start(call_id, message)
    while True:
        transcript = await client.continue_result(turn, wait=POLL_WAIT_MS / 1000)
        if transcript is not None:
            return {"success": True, "transcript": transcript}


@click.command(help=_("Say something on a call without waiting for a reply."))
@json_flag
@click.option("--call-id", required=True, help=_("The call's id."))
@click.option("-m", "--message", required=True, help=_("What to say."))
@reported
def speak(call_id: str, message: str) -> None:
    _done(rpc("voicecall.speak", {"callId": call_id, "message": message}), _("Spoken."))


@click.command(help=_("Send touch-tone digits on a call."))
@json_flag
@click.option("--call-id", required=True, help=_("The call's id."))
@click.option("--digits", required=True, help=_("Touch-tone digits: 0-9 * # (w, p or , pause)."))
@reported
def dtmf(call_id: str, digits: str) -> None:
    _done(
        rpc("voicecall.dtmf", {"callId": call_id, "digits": digits}),
        _("Sent {digits}.").format(digits=digits),
    )


@click.command(help=_("Hang up a call."))
@json_flag
@click.option("--call-id", required=True, help=_("The call's id."))
@reported
def end(call_id: str) -> None:
    _done(rpc("voicecall.end", {"callId": call_id}), _("Call ended."))


@click.command(help=_("Transfer a call to a person (E.164 number or sip: URI)."))
@json_flag
@click.argument("call_id")
@click.argument("to")
@click.option("--warm", is_flag=True, help=_("The person first hears a summary of the call."))
@click.option("--say", help=_("A line the caller hears before the transfer."))
@reported
def transfer(call_id: str, to: str, warm: bool, say: str | None) -> None:
    params: dict[str, Any] = {"callId": call_id, "to": to, "mode": "warm" if warm else "cold"}
    if say is not None:
        params["say"] = say
    _done(rpc("voicecall.transfer", params), _("Transferring to {to}.").format(to=to))


# --------------------------------------------------------------------------- status


@click.command(
    help=_(
        "Show active calls, or one call's details.\n\nAsks the running server; with no server "
        "running, reads the call store read-only."
    )
)
@json_flag
@click.option("--call-id", help=_("Show one call (any state). Default: all active calls."))
@click.option("--full", is_flag=True, help=_("Include transcript, turn latency and metadata."))
@reported
def status(call_id: str | None, full: bool) -> None:
    from voice_call.client.rpc import ServerUnavailable

    params: dict[str, Any] = {"full": full}
    if call_id:
        params["callId"] = call_id
    note = None
    try:
        result = rpc("voicecall.status", params)
    except ServerUnavailable:
        result, note = run(_status_from_store(call_id, full))
    _print_status(result, call_id, note)


async def _status_from_store(call_id: str | None, full: bool) -> tuple[dict[str, Any], str]:
    from voice_call.store.factory import sqlite_path
    from voice_call.store.sqlite import SqliteStore

    settings = root_settings()
    config = settings.config()
    path = sqlite_path(config, settings.home())
    if config.store.backend != "sqlite":
        raise VoiceCallError(
            _(
                "no server is running and the {backend} store cannot be read offline — start "
                "one with `voicecall serve`"
            ).format(backend=config.store.backend)
        )
    note = _(
        "No server is running: read {path} read-only (start one with `voicecall serve`)."
    ).format(path=path)
    try:
        store = await SqliteStore.open_readonly(path)
    except FileNotFoundError:
        empty: dict[str, Any] = {"found": False} if call_id else {"found": True, "calls": []}
        return empty, _("No server is running and there is no call store at {path} yet.").format(
            path=path
        )
    try:
        if call_id:
            record = await store.get(call_id)
            if record is None:
                return {"found": False}, note
            return {"found": True, "call": record.wire() if full else record.summary()}, note
        calls = await store.list_active()
        note += " " + _(
            "Calls listed as active are reconciled with the carrier when a server starts."
        )
        return {
            "found": True,
            "calls": [r.wire() if full else r.summary() for r in calls],
        }, note
    finally:
        await store.close()


def _print_status(result: dict[str, Any], call_id: str | None, note: str | None) -> None:
    if note:
        click.echo(note, err=True)
    if root_settings().as_json:
        print_json(result)
        if call_id and not result.get("found"):
            raise click.exceptions.Exit(EXIT_FAILURE)
        return
    from voice_call.cli.output import calls_table, print_call

    out = rich_console()
    if call_id:
        if not result.get("found"):
            raise fail(_("no call with id {id}").format(id=repr(call_id)))
        print_call(out, result["call"])
        return
    calls = result.get("calls") or []
    if not calls:
        out.print(_("No active calls."))
        return
    out.print(calls_table(calls))


# --------------------------------------------------------------------------- tail


@click.command(
    help=_(
        "Print recent events, then follow live ones (Ctrl-C stops).\n\nFollows the running "
        "server; with none, reads the call store read-only (--poll to keep following it)."
    )
)
@json_flag
@click.option(
    "--since",
    default="25",
    show_default=True,
    metavar="N|DURATION|TIME",
    help=_(
        "Where the backlog starts: the last N events (0: only new ones), a duration back "
        "from now (90s, 10m, 1h30m, 2d) or an ISO 8601 time (2026-12-07T09:30:00Z)."
    ),
)
@click.option(
    "--poll",
    type=click.FloatRange(min=MIN_POLL_S, max=3600),
    metavar="SECONDS",
    help=_(
        "With no server running: keep reading the call store every SECONDS for new events "
        "(without it, print what is stored and exit). A running server streams events as they "
        "happen, so it is followed instead."
    ),
)
@click.option("--call-id", help=_("Only this call's events."))
@reported
def tail(since: str, poll: float | None, call_id: str | None) -> None:
    import time

    from voice_call.cli.tail_store import parse_since

    start = parse_since(since, time.time())
    with contextlib.suppress(KeyboardInterrupt):
        run(_tail(start, poll, call_id))


async def _tail(since: Since, poll: float | None, call_id: str | None) -> None:
    from voice_call.cli.tail_store import read_store, start_seq
    from voice_call.client.rpc import RpcClient, ServerUnavailable
    from voice_call.store.factory import sqlite_path

    settings = root_settings()
    config = settings.config()
    path = sqlite_path(config, settings.home())
    if since.at is not None and config.store.backend != "sqlite":
        raise VoiceCallError(
            _(
                "--since with a time reads the SQLite store; the {backend} store cannot — pass a "
                "number of events instead"
            ).format(backend=config.store.backend)
        )
    write = _event_writer(settings.as_json)
    try:
        client = RpcClient.from_home(config, settings.home())
        seq = await start_seq(path, since)
        last = None if since.at is not None else since.count or None
        first = True
        async for event in client.events(since=seq, last=last, call_id=call_id):
            if first and poll is not None:
                click.echo(_("A server is running: following it live (no polling)."), err=True)
            first = False
            write(event)
    except ServerUnavailable:
        if config.store.backend != "sqlite":
            raise
        note = functools.partial(click.echo, err=True)
        async for logged in read_store(path, since, call_id, poll, note):
            write(logged.wire())
        return
    click.echo(_("The event stream ended (the server stopped)."), err=True)


def _event_writer(as_json: bool) -> Callable[[dict[str, Any]], None]:
    if as_json:

        def write_json(event: dict[str, Any]) -> None:
            sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
            sys.stdout.flush()

        return write_json
    from voice_call.cli.output import event_line

    out = rich_console()
    return lambda event: out.print(event_line(event))
