"""Rich rendering for the `voicecall` command line (tables, call details, event lines).

Imported only inside command functions, so `voicecall --help` never pays for rich.
Everything that comes from outside (transcripts, numbers, reasons) goes through `Text`,
never through console markup, so a caller saying "[bold]" prints as said.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from voice_call.cli.i18n import N_, _

STATE_STYLES = {
    "initiated": "cyan",
    "ringing": "cyan",
    "answered": "green",
    "active": "green",
    "speaking": "magenta",
    "listening": "blue",
}
TYPE_STYLES = {
    "call.speech": "bold blue",
    "bot.spoke": "bold magenta",
    "call.replied": "bold magenta",  # a realtime model's own answer
    "bot.speaking": "magenta",
    "call.dtmf": "yellow",
    "bot.dtmf": "yellow",
    "call.ended": "bold red",
    "call.error": "bold red",
    "call.answered": "green",
    "call.ignored": "dim",
}


def make_console(*, stderr: bool = False) -> Console:
    """A console that does not cut call ids when output goes to a pipe (rich assumes 80)."""
    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = 160
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def state_text(state: str | None) -> Text:
    if not state:
        return Text("-", style="dim")
    return Text(state, style=STATE_STYLES.get(state, "red"))


def clock_time(at: float | None, *, millis: bool = False) -> str:
    if at is None:
        return "-"
    stamp = time.strftime("%H:%M:%S", time.localtime(at))
    return f"{stamp}.{int((at % 1) * 1000):03d}" if millis else stamp


def date_time(at: float | None) -> str:
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, rest = divmod(int(value), 60)
    return f"{minutes}m{rest:02d}s"


def short_id(call_id: str | None) -> str:
    return (call_id or "-")[:8]


def calls_table(calls: Iterable[Mapping[str, Any]], *, now: float | None = None) -> Table:
    now = time.time() if now is None else now
    table = Table(title=_("Active calls"), title_justify="left", show_edge=False)
    table.add_column(_("Call ID"), no_wrap=True)
    table.add_column(_("State"), no_wrap=True)
    table.add_column(_("Direction"))
    table.add_column(_("Mode"))
    table.add_column(_("From"), no_wrap=True)
    table.add_column(_("To"), no_wrap=True)
    table.add_column(_("Started"), no_wrap=True)
    table.add_column(_("Age"), justify="right", no_wrap=True)
    for call in calls:
        started = call.get("startedAt")
        table.add_row(
            Text(str(call.get("callId", "-"))),
            state_text(call.get("state")),
            Text(str(call.get("direction", "-"))),
            Text(str(call.get("mode", "-"))),
            Text(str(call.get("from", "-"))),
            Text(str(call.get("to", "-"))),
            date_time(started),
            seconds(now - started) if isinstance(started, (int, float)) else "-",
        )
    return table


def duration(call: Mapping[str, Any]) -> float | None:
    started, ended = call.get("startedAt"), call.get("endedAt")
    if isinstance(started, (int, float)) and isinstance(ended, (int, float)):
        return float(ended - started)
    return None


def print_call(console: Console, call: Mapping[str, Any]) -> None:
    """One call's record: the summary, plus transcript, latency and metadata when present."""
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold", no_wrap=True)
    info.add_column()
    answered = call.get("answeredAt")
    ended = call.get("endedAt")
    rows: list[tuple[str, Text | str]] = [
        (N_("Call ID"), Text(str(call.get("callId", "-")))),
        (N_("State"), state_text(call.get("state"))),
        (N_("End reason"), Text(str(call.get("endReason", "-")))),
        (N_("Direction"), Text(str(call.get("direction", "-")))),
        (N_("Mode"), Text(str(call.get("mode", "-")))),
        (N_("From"), Text(str(call.get("from", "-")))),
        (N_("To"), Text(str(call.get("to", "-")))),
        (N_("Provider"), Text(f"{call.get('provider', '-')} ({call.get('providerCallId', '-')})")),
        (N_("Started"), date_time(call.get("startedAt"))),
        (N_("Answered"), date_time(answered)),
        (N_("Ended"), date_time(ended)),
        (N_("Duration"), seconds(duration(call))),
    ]
    for key, label in (("agentId", N_("Agent")), ("sessionKey", N_("Session key"))):
        if call.get(key):  # the full view only
            rows.append((label, Text(str(call[key]))))
    for label, value in rows:
        info.add_row(_(label), value)
    console.print(info)
    transcript = call.get("transcript")
    if isinstance(transcript, list) and transcript:
        console.print()
        console.print(transcript_table(transcript, call.get("startedAt")))
    latency = call.get("latency")
    if isinstance(latency, list) and latency:
        console.print()
        console.print(latency_table(latency))
    metadata = call.get("metadata")
    if isinstance(metadata, dict) and metadata:
        console.print()
        meta = Table(title=_("Metadata"), title_justify="left", show_edge=False)
        meta.add_column(_("Key"), no_wrap=True)
        meta.add_column(_("Value"))
        for key, value in metadata.items():
            shown = date_time(value) if _is_time(key, value) else str(value)
            meta.add_row(Text(str(key)), Text(shown))
        console.print(meta)


def _is_time(key: str, value: Any) -> bool:
    """`hangupRequestedAt: 1795667388.25` reads better as a date."""
    return key.endswith("At") and isinstance(value, (int, float)) and not isinstance(value, bool)


def transcript_table(entries: Iterable[Mapping[str, Any]], started: Any) -> Table:
    table = Table(title=_("Transcript"), title_justify="left", show_edge=False)
    table.add_column(_("At"), justify="right", no_wrap=True)
    table.add_column(_("Who"), no_wrap=True)
    table.add_column(_("Text"))
    for entry in entries:
        at = entry.get("at")
        offset = (
            f"+{at - started:.2f}s"
            if isinstance(at, (int, float)) and isinstance(started, (int, float))
            else "-"
        )
        speaker = str(entry.get("speaker", "?"))
        bot = speaker == "bot"
        who = Text(_("bot"), style="magenta") if bot else Text(_("caller"), style="blue")
        table.add_row(offset, who, Text(str(entry.get("text", ""))))
    return table


LATENCY_COLUMNS = (
    (N_("Turn"), "turn"),
    (N_("Kind"), "kind"),
    (N_("Speak"), "speakMs"),
    (N_("Listen wait"), "listenWaitMs"),
    (N_("Endpointing"), "endpointingMs"),
    (N_("First token"), "responderFirstTokenMs"),
    (N_("TTS first byte"), "ttsFirstByteMs"),
    (N_("Voice-to-voice"), "voiceToVoiceMs"),
    (N_("Total"), "totalMs"),
    (N_("Outcome"), "outcome"),
)


def latency_table(turns: Iterable[Mapping[str, Any]]) -> Table:
    """One row a turn; a column only when some turn has it (continue turns and reply turns
    measure different things, and endpointing / TTS only exist on streamed calls)."""
    turns = list(turns)
    columns = [
        (name, key)
        for name, key in LATENCY_COLUMNS
        if key == "turn" or any(turn.get(key) is not None for turn in turns)
    ]
    table = Table(title=_("Turn latency (ms)"), title_justify="left", show_edge=False)
    for name, key in columns:
        table.add_column(_(name), justify="left" if key in ("kind", "outcome") else "right")
    for turn in turns:
        table.add_row(*(_cell(turn.get(key), key) for _name, key in columns))
    return table


def _cell(value: Any, key: str) -> str:
    if key == "turn":
        return str(value if value is not None else "-")
    if key in ("kind", "outcome"):
        return str(value) if value is not None else "-"
    return _ms(value)


def _ms(value: Any) -> str:
    return f"{value:.0f}" if isinstance(value, (int, float)) else "-"


def event_detail(event: Mapping[str, Any]) -> str:
    """The part of an event a person wants to read: what was said, pressed, or why it ended."""
    data = event.get("data")
    if not isinstance(data, dict):
        return ""
    if event.get("type") == "call.ignored":  # which carrier event, and why it changed nothing
        return f"{data.get('event', '?')} {data.get('outcome', 'ignored')}"
    for key in ("transcript", "text"):
        if data.get(key):
            text = f'"{data[key]}"'
            if event.get("type") == "call.speech" and data.get("isFinal") is False:
                text += " (partial)"
            return text
    for key in ("digits", "reason", "error", "to", "providerCallId", "outcome"):
        if data.get(key):
            return f"{key}={data[key]}"
    return ""


def event_line(event: Mapping[str, Any]) -> Text:
    """`12:00:01.234  1a2b3c4d  call.speech      listening   "Hi, this is Sam."`"""
    kind = str(event.get("type", "?"))
    at = event.get("at")
    line = Text()
    line.append(clock_time(at if isinstance(at, (int, float)) else None, millis=True), "dim")
    line.append("  ")
    line.append(short_id(event.get("callId")), "cyan")
    line.append("  ")
    line.append(f"{kind:<16}", TYPE_STYLES.get(kind, ""))
    line.append(" ")
    state = event.get("state")
    line.append(f"{state or '-':<12}", STATE_STYLES.get(str(state), "red" if state else "dim"))
    detail = event_detail(event)
    if detail:
        line.append(" ")
        line.append(detail)
    return line
