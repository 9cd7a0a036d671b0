"""`voicecall latency`: p50 / p95 / p99 of every per-turn latency component, from the store.

Reads the call store read-only (it works with or without a running server) and summarises the
most recent N turns: for auto-replies voice-to-voice (the caller's words received → our first
reply sent to the carrier), responder first token and total, endpointing and TTS first byte
where they exist; for `continue` turns the speak, listen-wait and total times.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import click

from voice_call.cli.common import (
    RootSettings,
    json_flag,
    print_json,
    reported,
    root_settings,
    run,
)
from voice_call.cli.i18n import N_, _
from voice_call.models import CallRecord, TurnLatency

# (TurnLatency field, wire name, what it measures) in the order they are printed.
COMPONENTS: tuple[tuple[str, str, str], ...] = (
    ("voice_to_voice_ms", "voiceToVoiceMs", N_("voice-to-voice (reply)")),
    ("endpointing_ms", "endpointingMs", N_("endpointing")),
    ("responder_first_token_ms", "responderFirstTokenMs", N_("responder first token")),
    ("responder_total_ms", "responderTotalMs", N_("responder total")),
    ("tts_first_byte_ms", "ttsFirstByteMs", N_("TTS first byte")),
    ("speak_ms", "speakMs", N_("speak (continue)")),
    ("listen_wait_ms", "listenWaitMs", N_("listen wait (continue)")),
    ("total_ms", "totalMs", N_("turn total")),
)
# At least this many recent calls are read: notify calls hold no turns.
MIN_CALLS = 50
DEFAULT_LAST = 200  # turns, as the plugin's `latency --last`


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); `ordered` sorted, non-empty."""
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(turns: Iterable[TurnLatency]) -> dict[str, dict[str, float | int]]:
    """{wireName: {count, p50, p95, p99, min, max, mean}} for each component that has values."""
    values: dict[str, list[float]] = {wire: [] for _field, wire, _label in COMPONENTS}
    for turn in turns:
        for field, wire, _label in COMPONENTS:
            value = getattr(turn, field)
            if isinstance(value, int | float) and math.isfinite(value):
                values[wire].append(float(value))
    out: dict[str, dict[str, float | int]] = {}
    for wire, samples in values.items():
        if not samples:
            continue
        samples.sort()
        out[wire] = {
            "count": len(samples),
            "p50": round(percentile(samples, 50), 3),
            "p95": round(percentile(samples, 95), 3),
            "p99": round(percentile(samples, 99), 3),
            "min": round(samples[0], 3),
            "max": round(samples[-1], 3),
            "mean": round(sum(samples) / len(samples), 3),
        }
    return out


def latest_turns(calls: Iterable[CallRecord], last: int) -> list[TurnLatency]:
    """The `last` most recent turns across calls (by when each ended, then call start)."""
    turns: list[tuple[float, int, TurnLatency]] = []
    for call in calls:
        for index, turn in enumerate(call.latency):
            turns.append((turn.at if turn.at is not None else call.started_at, index, turn))
    turns.sort(key=lambda item: (item[0], item[1]))
    return [turn for _, _, turn in turns[-last:]] if last > 0 else []


def report(calls: list[CallRecord], last: int) -> dict[str, Any]:
    turns = latest_turns(calls, last)
    return {
        "callsScanned": len(calls),
        "turns": len(turns),
        "replies": sum(1 for t in turns if t.kind.value == "reply"),
        "components": summarize(turns),
    }


def _ljust(text: str, width: int) -> str:
    """`text` padded to `width` terminal columns: CJK characters take two."""
    wide = sum(1 for ch in text if unicodedata.east_asian_width(ch) in "WF")
    return text + " " * max(0, width - len(text) - wide)


def _rjust(text: str, width: int) -> str:
    wide = sum(1 for ch in text if unicodedata.east_asian_width(ch) in "WF")
    return " " * max(0, width - len(text) - wide) + text


def render(data: dict[str, Any]) -> str:
    components = data["components"]
    lines = [
        _("{turns} turn(s) from {calls} call(s), milliseconds:").format(
            turns=data["turns"], calls=data["callsScanned"]
        )
    ]
    if not components:
        lines.append(_("No turn latency recorded yet."))
        return "\n".join(lines)
    header = (
        _ljust(_("component"), 26)
        + _rjust(_("count"), 7)
        + "".join(_rjust(q, 10) for q in ("p50", "p95", "p99"))
        + _rjust(_("max"), 10)
    )
    lines += [header, "-" * (26 + 7 + 40)]
    for _field, wire, label in COMPONENTS:
        row = components.get(wire)
        if row is None:
            continue
        lines.append(
            f"{_ljust(_(label), 26)}{row['count']:>7}{row['p50']:>10.1f}{row['p95']:>10.1f}"
            f"{row['p99']:>10.1f}{row['max']:>10.1f}"
        )
    return "\n".join(lines)


async def _load(settings: RootSettings, last: int) -> tuple[list[CallRecord], str | None]:
    from voice_call.errors import VoiceCallError
    from voice_call.store.factory import sqlite_path
    from voice_call.store.sqlite import SqliteStore

    config = settings.config()
    if config.store.backend != "sqlite":
        raise VoiceCallError(
            _(
                "`voicecall latency` reads the SQLite store; the {backend} store is "
                "not supported yet"
            ).format(backend=config.store.backend)
        )
    path = sqlite_path(config, settings.home())
    try:
        store = await SqliteStore.open_readonly(path)
    except FileNotFoundError:
        return [], _("No call store at {file} yet.").format(file=path)
    try:
        return await store.list_recent(max(MIN_CALLS, last)), None
    finally:
        await store.close()


@click.command(
    name="latency",
    help=_(
        "Per-turn latency percentiles (p50/p95/p99) from the call store; no server needed.\n"
        "\n"
        "\b\n"
        "--json prints, all times in milliseconds:\n"
        '  {"callsScanned": calls read, "turns": turns summarised,\n'
        '   "replies": how many of them were auto-replies,\n'
        '   "components": {COMPONENT: {"count", "p50", "p95", "p99", "min", "max", "mean"}}}\n'
        "COMPONENT is one of voiceToVoiceMs, endpointingMs, responderFirstTokenMs,\n"
        "responderTotalMs, ttsFirstByteMs, speakMs, listenWaitMs, totalMs; only those with at\n"
        "least one value are present."
    ),
)
@click.option(
    "--last",
    type=click.IntRange(min=1, max=100_000),
    default=DEFAULT_LAST,
    show_default=True,
    metavar="N",
    help=_(
        "Summarise this many of the most recent turns, read from the most recent "
        "max(N, {calls}) calls."
    ).format(calls=MIN_CALLS),
)
@json_flag
@reported
def latency(last: int) -> None:
    settings = root_settings()
    calls, note = run(_load(settings, last))
    if note:
        click.echo(note, err=True)
    data = report(calls, last)
    if settings.as_json:
        print_json(data)
    else:
        click.echo(render(data))
