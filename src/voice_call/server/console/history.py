"""History search: ended calls from the store, filtered by number, date and end state.

The store lists recent calls (`list_recent`); the filter runs here over the newest
`SCAN_LIMIT` of them, so a search never walks an unbounded table.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from starlette.datastructures import QueryParams

from voice_call.models import TERMINAL_STATES, CallRecord

SCAN_LIMIT = 2000
MAX_RESULTS = 200
_NUMBER = re.compile(r"\+?[0-9]{1,15}")
_STATES = sorted(s.value for s in TERMINAL_STATES)


class BadHistoryQuery(ValueError):
    pass


@dataclass(frozen=True)
class HistoryQuery:
    number: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    state: str | None = None

    def matches(self, record: CallRecord) -> bool:
        if not record.terminal:
            return False
        if self.number and not any(
            self.number in n for n in (record.to_number, record.from_number)
        ):
            return False
        if self.state and record.state.value != self.state:
            return False
        day = dt.datetime.fromtimestamp(record.started_at, dt.UTC).date()
        return (self.since is None or day >= self.since) and (
            self.until is None or day <= self.until
        )


def parse_history_query(params: QueryParams) -> HistoryQuery:
    number = params.get("number", "").strip() or None
    if number is not None and not _NUMBER.fullmatch(number):
        raise BadHistoryQuery("number must be digits, optionally after a +, e.g. +1555 or 0123")
    state = params.get("state", "").strip() or None
    if state is not None and state not in _STATES:
        raise BadHistoryQuery(f"state must be an end state: one of {', '.join(_STATES)}")
    return HistoryQuery(number, _date(params, "since"), _date(params, "until"), state)


def _date(params: QueryParams, name: str) -> dt.date | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw) if len(raw) == 10 else _bad_date(name)
    except ValueError:
        return _bad_date(name)


def _bad_date(name: str) -> dt.date:
    raise BadHistoryQuery(f"{name} must be a date as YYYY-MM-DD (UTC), e.g. 2026-01-31")


def search(records: list[CallRecord], query: HistoryQuery) -> list[CallRecord]:
    return [r for r in records if query.matches(r)][:MAX_RESULTS]
