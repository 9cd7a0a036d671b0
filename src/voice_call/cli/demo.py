"""`voicecall demo`: one complete simulated phone call, end to end, in a few seconds.

It runs the real thing — Runtime, call manager, SQLite store, HTTP server, JSON-RPC and the
SSE event stream — against the mock carrier and its simulated callee, in a temporary state
folder (never ~/.voicecall). The bot greets, the callee answers with three scripted lines,
the built-in echo responder replies to each, and the callee hangs up after the third reply.
The `demo` command is below; `run_demo` is the call it runs. `demo --realtime` runs a realtime
voice call instead (demo_realtime.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from voice_call.cli.common import print_json, reported, rich_console, root_settings, run

if TYPE_CHECKING:
    from rich.console import Console

    from voice_call.client.rpc import RpcClient

DEMO_TIMEOUT_S = 20.0
TO_NUMBER = "+15555550123"
GREETING = "Hi! This is the clinic's assistant calling to confirm your appointment."
CALLEE_LINES = (
    "Hello, this is Sam speaking.",
    "Yes, Tuesday at three still works for me.",
    "No, that's everything. Thanks, bye!",
)
DEMO_CONFIG: dict[str, Any] = {
    "provider": "mock",
    "toNumber": TO_NUMBER,
    "serve": {"port": 0},
    "outbound": {"defaultMode": "conversation"},
    "responder": {"provider": "echo"},
    "mock": {
        "answerDelayMs": 300,
        "replyDelayMs": 400,
        "hangupAfterTurns": 3,
        "replies": list(CALLEE_LINES),
    },
    "maxConcurrentCalls": 1,
}


@click.command()
@click.option(
    "--realtime",
    is_flag=True,
    help="A realtime voice call instead: the Twilio emulator and a fake speech-to-speech model.",
)
@click.option(
    "--model",
    type=click.Choice(["openai", "google"]),
    default=None,
    help="With --realtime: the fake model service to talk to (default openai).",
)
@reported
def demo(realtime: bool, model: str | None) -> None:
    """Run a simulated call end to end (no carrier, no keys needed).

    `--realtime` runs a realtime voice call instead: the Twilio emulator and its callee, a fake
    OpenAI Realtime (or, with `--model google`, Gemini Live) model, and the real server between
    them — greeting, answers, a barge-in, the goodbye and end_call, with the voice-to-voice
    figure of each turn. Nothing is saved: the demo uses a temporary state folder and leaves
    ~/.voicecall alone.
    """
    if model is not None and not realtime:
        raise click.UsageError("--model picks the fake realtime model — add --realtime")
    if realtime:
        code = run(_realtime(model or "openai", as_json=root_settings().as_json))
    else:
        code = run(run_demo(rich_console()))
    if code:
        raise click.exceptions.Exit(code)


async def _realtime(model: str, *, as_json: bool) -> int:
    """`demo --realtime`: narrated, or one JSON object with `--json`; returns the exit code."""
    from voice_call.cli.demo_realtime import MODELS, print_figures, run_realtime_demo

    chosen = next(name for name in MODELS if name == model)
    console = None if as_json else rich_console()
    try:
        outcome = await run_realtime_demo(console, chosen)
    except TimeoutError:
        message = "the realtime demo did not finish in time — the call never ended; this is a bug"
        if as_json:
            print_json({"ok": False, "model": chosen, "error": message})
        else:
            rich_console().print(f"[bold red]{message}, please report it.[/]")
        return 1
    if as_json:
        print_json(outcome.wire())
    elif console is not None:
        console.print()
        print_record(console, outcome.record)
        print_figures(console, outcome)
        verdict = "" if outcome.ok else " [bold red]— the call did not end as scripted[/]"
        console.print(f"[dim]Demo finished in {outcome.elapsed_s:.1f} s.[/]{verdict}")
    return 0 if outcome.ok else 1


async def run_demo(console: Console) -> int:
    """Run the demo, printing as it goes; returns the process exit code."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(DEMO_TIMEOUT_S):
            await _demo(console)
    except TimeoutError:
        console.print(
            f"[bold red]The demo did not finish within {DEMO_TIMEOUT_S:.0f} s[/] — "
            "the simulated call never ended; this is a bug, please report it."
        )
        return 1
    console.print(f"[dim]Demo finished in {time.monotonic() - started:.1f} s.[/]")
    return 0


async def _demo(console: Console) -> None:
    from voice_call.client.rpc import RpcClient
    from voice_call.config import parse_config
    from voice_call.runtime import Runtime
    from voice_call.server.serve import start_background

    # env={}: the demo must not pick up carrier keys or anything else from the environment.
    config = parse_config(DEMO_CONFIG, env={})
    with tempfile.TemporaryDirectory(prefix="voicecall-demo-") as folder:
        runtime = Runtime(config, Path(folder))
        server = await start_background(runtime)  # starts the runtime; stop() stops both
        try:
            console.print(
                f"[bold]voicecall demo[/] — mock carrier, simulated callee, server on {server.url}"
            )
            client = RpcClient(server.url, runtime.rpc_token)
            await _place_and_follow(console, client)
        finally:
            await server.stop()


async def _place_and_follow(console: Console, client: RpcClient) -> None:
    from rich.text import Text

    console.print(f"Calling {TO_NUMBER} in conversation mode…")
    result = await client.call(
        "voicecall.initiate",
        {"to": TO_NUMBER, "message": GREETING, "mode": "conversation"},
    )
    call_id = str(result["callId"])
    console.print(Text(f"Call id {call_id}", style="dim"))
    console.print()
    # since=0 replays the call's log from its first entry, so nothing said before the stream
    # opened is missed, then follows it live.
    # aclosing: close the stream now rather than when the generator is collected
    async with contextlib.aclosing(client.events(since=0, call_id=call_id)) as events:
        await _print_live(console, events)
    status = await client.call("voicecall.status", {"callId": call_id, "full": True})
    console.print()
    print_record(console, status.get("call") or {})


async def _print_live(console: Console, events: AsyncIterator[dict[str, Any]]) -> None:
    """Print the call as it happens until it ends."""
    from rich.text import Text

    from voice_call.errors import Unavailable
    from voice_call.models import TERMINAL_STATES

    terminal = {state.value for state in TERMINAL_STATES}
    start: float | None = None
    caller_spoke_at: float | None = None
    async for event in events:
        at = float(event.get("at") or 0.0)
        start = at if start is None else start
        kind = event.get("type")
        data: Mapping[str, Any] = event.get("data") or {}
        stamp = Text(f"[{at - start:5.2f}s] ", style="dim")
        if kind == "call.ringing":
            console.print(stamp + Text("ringing…", style="cyan"))
        elif kind == "call.answered":
            console.print(stamp + Text("answered", style="green"))
        elif kind == "bot.spoke":
            line = stamp + Text("bot:    ", style="bold magenta") + Text(str(data.get("text", "")))
            if caller_spoke_at is not None:
                line += Text(f"  (replied in {(at - caller_spoke_at) * 1000:.0f} ms)", style="dim")
                caller_spoke_at = None
            console.print(line)
        elif kind == "call.speech" and data.get("isFinal", True):
            text = str(data.get("transcript") or data.get("text") or "")
            console.print(stamp + Text("caller: ", style="bold blue") + Text(text))
            caller_spoke_at = at
        elif kind == "call.speech":
            partial = str(data.get("transcript") or "")
            console.print(stamp + Text(f"caller: {partial}…", style="dim blue"))
        if str(event.get("state") or "") in terminal or kind == "call.ended":
            reason = data.get("reason") or event.get("state")
            console.print(stamp + Text(f"call ended: {reason}", style="bold red"))
            return
    raise Unavailable("the event stream ended before the call did")


def print_record(console: Console, call: Mapping[str, Any]) -> None:
    """The final call record, briefly (both demos end with it)."""
    from voice_call.cli.output import latency_table, seconds

    started, answered, ended = call.get("startedAt"), call.get("answeredAt"), call.get("endedAt")
    talk = ended - answered if isinstance(answered, float) and isinstance(ended, float) else None
    total = ended - started if isinstance(started, float) and isinstance(ended, float) else None
    turns = sum(1 for e in call.get("transcript") or [] if e.get("speaker") == "user")
    console.print("[bold]Final call record[/] (voicecall.status, full):")
    console.print(f"  state:       {call.get('state')}", markup=False)
    console.print(f"  end reason:  {call.get('endReason')}", markup=False)
    console.print(f"  duration:    {seconds(total)} (talk time {seconds(talk)})", markup=False)
    console.print(
        f"  transcript:  {len(call.get('transcript') or [])} lines, {turns} from the caller"
    )
    latency = call.get("latency") or []
    if latency:
        console.print(latency_table(latency))
