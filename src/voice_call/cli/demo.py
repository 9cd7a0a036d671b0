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
from voice_call.cli.i18n import _

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
# `demo --lang zh-TW`: the same call held in Mandarin, its lines in Traditional Chinese.
GREETING_ZH_TW = "您好！這裡是診所的助理，來電和您確認預約時間。"
CALLEE_LINES_ZH_TW = (
    "您好，我是王小明。",
    "對，星期二下午三點還是可以。",
    "沒有其他問題了，謝謝，再見！",
)
SCRIPTS = {"en-US": (GREETING, CALLEE_LINES), "zh-TW": (GREETING_ZH_TW, CALLEE_LINES_ZH_TW)}


def demo_config(language: str) -> dict[str, Any]:
    """The demo's config for a call held in `language` (a key of SCRIPTS)."""
    lines = list(SCRIPTS[language][1])
    return {**DEMO_CONFIG, "language": language, "mock": {**DEMO_CONFIG["mock"], "replies": lines}}


@click.command(
    help=_(
        "Run a simulated call end to end (no carrier, no keys needed).\n\n`--realtime` runs a "
        "realtime voice call instead: the Twilio emulator and its callee, a fake OpenAI Realtime "
        "(or, with `--model google`, Gemini Live) model, and the real server between them — "
        "greeting, answers, a barge-in, the goodbye and end_call, with the voice-to-voice figure "
        "of each turn. Nothing is saved: the demo uses a temporary state folder and leaves "
        "~/.voicecall alone."
    )
)
@click.option(
    "--realtime",
    is_flag=True,
    help=_("A realtime voice call instead: the Twilio emulator and a fake speech-to-speech model."),
)
@click.option(
    "--model",
    type=click.Choice(["openai", "google"]),
    default=None,
    help=_("With --realtime: the fake model service to talk to (default openai)."),
)
@click.option(
    "--lang",
    "language",
    type=click.Choice(["en-US", "zh-TW"], case_sensitive=False),
    default="en-US",
    help=_("The language the call is held in (zh-TW: Mandarin, Traditional Chinese)."),
)
@reported
def demo(realtime: bool, model: str | None, language: str) -> None:
    # the help text is in `help=` above, so that it can be translated
    if model is not None and not realtime:
        raise click.UsageError(_("--model picks the fake realtime model — add --realtime"))
    if realtime and language.lower() != "en-us":
        raise click.UsageError(_("--lang applies to the mock-carrier demo — drop --realtime"))
    if realtime:
        code = run(_realtime(model or "openai", as_json=root_settings().as_json))
    else:
        chosen = next(name for name in SCRIPTS if name.lower() == language.lower())
        code = run(run_demo(rich_console(), chosen))
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
            late = _(
                "the realtime demo did not finish in time — the call never ended; this is a bug, "
                "please report it."
            )
            rich_console().print(f"[bold red]{late}[/]")
        return 1
    if as_json:
        print_json(outcome.wire())
    elif console is not None:
        console.print()
        print_record(console, outcome.record)
        print_figures(console, outcome)
        off_script = _("— the call did not end as scripted")
        verdict = "" if outcome.ok else f" [bold red]{off_script}[/]"
        console.print(f"[dim]{_finished(outcome.elapsed_s)}[/]{verdict}")
    return 0 if outcome.ok else 1


async def run_demo(console: Console, language: str = "en-US") -> int:
    """Run the demo, printing as it goes; returns the process exit code."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(DEMO_TIMEOUT_S):
            await _demo(console, language)
    except TimeoutError:
        late = _("The demo did not finish within {seconds} s").format(
            seconds=f"{DEMO_TIMEOUT_S:.0f}"
        )
        bug = _("the simulated call never ended; this is a bug, please report it.")
        console.print(f"[bold red]{late}[/] — {bug}")
        return 1
    console.print(f"[dim]{_finished(time.monotonic() - started)}[/]")
    return 0


def _finished(elapsed_s: float) -> str:
    return _("Demo finished in {seconds} s.").format(seconds=f"{elapsed_s:.1f}")


async def _demo(console: Console, language: str) -> None:
    from voice_call.client.rpc import RpcClient
    from voice_call.config import parse_config
    from voice_call.runtime import Runtime
    from voice_call.server.serve import start_background

    # env={}: the demo must not pick up carrier keys or anything else from the environment.
    config = parse_config(demo_config(language), env={})
    with tempfile.TemporaryDirectory(prefix="voicecall-demo-") as folder:
        runtime = Runtime(config, Path(folder))
        server = await start_background(runtime)  # starts the runtime; stop() stops both
        try:
            about = _("mock carrier, simulated callee, server on {url}").format(url=server.url)
            console.print(f"[bold]voicecall demo[/] — {about}")
            client = RpcClient(server.url, runtime.rpc_token)
            await _place_and_follow(console, client, SCRIPTS[language][0])
        finally:
            await server.stop()


async def _place_and_follow(console: Console, client: RpcClient, greeting: str) -> None:
    from rich.text import Text

    console.print(_("Calling {number} in conversation mode…").format(number=TO_NUMBER))
    result = await client.call(
        "voicecall.initiate",
        {"to": TO_NUMBER, "message": greeting, "mode": "conversation"},
    )
    call_id = str(result["callId"])
    console.print(Text(_("Call id {id}").format(id=call_id), style="dim"))
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
            console.print(stamp + Text(_("ringing…"), style="cyan"))
        elif kind == "call.answered":
            console.print(stamp + Text(_("answered"), style="green"))
        elif kind == "bot.spoke":
            line = (
                stamp + Text(_("bot:    "), style="bold magenta") + Text(str(data.get("text", "")))
            )
            if caller_spoke_at is not None:
                took = f"{(at - caller_spoke_at) * 1000:.0f}"
                line += Text(_("  (replied in {ms} ms)").format(ms=took), style="dim")
                caller_spoke_at = None
            console.print(line)
        elif kind == "call.speech" and data.get("isFinal", True):
            text = str(data.get("transcript") or data.get("text") or "")
            console.print(stamp + Text(_("caller: "), style="bold blue") + Text(text))
            caller_spoke_at = at
        elif kind == "call.speech":
            partial = str(data.get("transcript") or "")
            console.print(stamp + Text(_("caller: ") + f"{partial}…", style="dim blue"))
        if str(event.get("state") or "") in terminal or kind == "call.ended":
            reason = data.get("reason") or event.get("state")
            console.print(
                stamp + Text(_("call ended: {reason}").format(reason=reason), style="bold red")
            )
            return
    raise Unavailable("the event stream ended before the call did")


def print_record(console: Console, call: Mapping[str, Any]) -> None:
    """The final call record, briefly (both demos end with it)."""
    from voice_call.cli.output import latency_table, seconds

    started, answered, ended = call.get("startedAt"), call.get("answeredAt"), call.get("endedAt")
    talk = ended - answered if isinstance(answered, float) and isinstance(ended, float) else None
    total = ended - started if isinstance(started, float) and isinstance(ended, float) else None
    turns = sum(1 for e in call.get("transcript") or [] if e.get("speaker") == "user")
    lines = len(call.get("transcript") or [])
    heading = _("Final call record")
    console.print(f"[bold]{heading}[/] (voicecall.status, full):")
    console.print(_("  state:       {state}").format(state=call.get("state")), markup=False)
    console.print(_("  end reason:  {reason}").format(reason=call.get("endReason")), markup=False)
    duration = _("  duration:    {total} (talk time {talk})")
    console.print(duration.format(total=seconds(total), talk=seconds(talk)), markup=False)
    console.print(
        _("  transcript:  {lines} lines, {turns} from the caller").format(lines=lines, turns=turns)
    )
    latency = call.get("latency") or []
    if latency:
        console.print(latency_table(latency))
