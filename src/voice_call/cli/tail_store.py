"""`voicecall tail` without a server: the event log read straight from the SQLite store.

`--since` is a number of past events (the default, 25), a duration back from now (`90s`,
`10m`, `1h30m`, `2d`) or an ISO 8601 time (`2026-12-07T09:30:00Z`; without a zone it is local
time). `--poll SECONDS` keeps reading the store for new events; without it the command prints
what is there and exits. The store is opened read-only, so this works beside a running server
too (a server's own stream is still preferred: it has no polling delay).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from voice_call.cli.i18n import _
from voice_call.errors import InvalidInput, VoiceCallError
from voice_call.server.event_log import events_after, last_events
from voice_call.store.base import LoggedEvent
from voice_call.store.sqlite import SqliteStore

MAX_COUNT = 10_000
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)([smhd]))+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


@dataclass(frozen=True)
class Since:
    """Where the backlog starts: the last `count` events, or every event at/after `at`."""

    count: int | None = None
    at: float | None = None  # Unix seconds


def parse_since(value: str, now: float) -> Since:
    """`25` (events), `10m` / `1h30m` (a duration back from `now`) or an ISO 8601 time."""
    text = value.strip()
    if text.isascii() and text.isdigit():
        count = int(text)
        if count > MAX_COUNT:
            raise InvalidInput(
                _("--since {value}: at most {limit} past events can be asked for").format(
                    value=value, limit=MAX_COUNT
                )
            )
        return Since(count=count)
    lowered = text.lower()
    if _DURATION.fullmatch(lowered):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(lowered))
        return Since(at=now - seconds)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            _(
                "--since {value} is not a number of events, a duration or a time — write e.g. "
                "--since 50, --since 10m or --since 2026-12-07T09:30:00Z"
            ).format(value=repr(value))
        ) from None
    return Since(at=when.timestamp())  # a naive time is local time


async def first_seq_at(store: SqliteStore, at: float) -> int:
    """A seq to read after so that every event at/after `at` is included (binary search over
    seq: seqs and times grow together, one writer stamps both)."""
    low, high = 0, await store.last_seq()
    while low < high:
        middle = (low + high) // 2
        page = await store.events(since_seq=middle, limit=1)
        if not page or page[0].at >= at:
            high = middle
        else:
            low = page[0].seq
    return low


async def backlog(store: SqliteStore, since: Since, call_id: str | None) -> list[LoggedEvent]:
    if since.at is None:
        if not since.count:
            return []
        return await last_events(store, since.count, call_id)
    start = await first_seq_at(store, since.at)
    return [e async for e in events_after(store, start, call_id) if e.at >= since.at]


async def start_seq(path: Path, since: Since) -> int | None:
    """The seq a server's stream should start after for a time `since` (None: no store yet)."""
    if since.at is None:
        return None
    try:
        store = await SqliteStore.open_readonly(path)
    except FileNotFoundError:
        return None
    try:
        return await first_seq_at(store, since.at)
    finally:
        await store.close()


async def read_store(
    path: Path,
    since: Since,
    call_id: str | None,
    poll_s: float | None,
    note: Callable[[str], None],
) -> AsyncIterator[LoggedEvent]:
    """The backlog `since` asks for, then (with `poll_s`) each new event as it is stored."""
    store = await _open(path, note, waiting=poll_s is not None)
    while store is None:
        assert poll_s is not None  # _open said so when there is nothing to wait for
        await asyncio.sleep(poll_s)
        store = await _open(path, note, waiting=True, quiet=True)
    try:
        seen = await store.last_seq()  # polling starts after what is stored now
        for event in await backlog(store, since, call_id):
            seen = max(seen, event.seq)
            yield event
        if poll_s is None:
            return
        while True:
            await asyncio.sleep(poll_s)
            async for event in events_after(store, seen, call_id):
                seen = event.seq
                yield event
    finally:
        await store.close()


async def _open(
    path: Path, note: Callable[[str], None], *, waiting: bool, quiet: bool = False
) -> SqliteStore | None:
    try:
        store = await SqliteStore.open_readonly(path)
    except FileNotFoundError:
        if not waiting:
            raise VoiceCallError(
                _(
                    "no server is running and there is no call store at {file} yet — start one "
                    "with `voicecall serve`"
                ).format(file=path)
            ) from None
        if not quiet:
            note(
                _("No server is running and no call store at {file} yet: waiting for one.").format(
                    file=path
                )
            )
        return None
    if not quiet:
        how = _("polling it for new events") if waiting else _("pass --poll 1 to keep following it")
        note(_("No server is running: reading {file} read-only, {how}.").format(file=path, how=how))
    return store
