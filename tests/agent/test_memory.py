"""Memory keys (agent/memory.py): the agent (`agentId`) and the session (`sessionKey`, else
`sessionScope`) decide which earlier calls a call remembers; records stored before calls had
an agent or a session key still load and count as the default agent."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from voice_call.agent.memory import memory_key, session_history
from voice_call.models import CallRecord, Direction, Mode, Speaker, TranscriptEntry
from voice_call.store.sqlite import SqliteStore


def call(text: str, started: float, to: str = "+15555550123", **extra: Any) -> CallRecord:
    return CallRecord(
        provider="mock",
        direction=Direction.OUTBOUND,
        mode=Mode.CONVERSATION,
        from_number="+15550000000",
        to_number=to,
        started_at=started,
        transcript=[TranscriptEntry(at=started, speaker=Speaker.USER, text=text)],
        **extra,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "calls.db")
    await store.open()
    yield store
    await store.close()


async def texts(store: SqliteStore, current: CallRecord, scope: str = "per-phone") -> list[str]:
    return [e.text for e in await session_history(store, current, scope, 40)]


async def test_agents_never_share_memory(store: SqliteStore) -> None:
    for rec in (
        call("told sales", 100, agent_id="sales"),
        call("told support", 200, agent_id="support"),
        call("told main", 300, agent_id="main"),
    ):
        await store.save(rec)
    for scope in ("per-phone", "main"):
        assert await texts(store, call("now", 1000, agent_id="sales"), scope) == ["told sales"]
        assert await texts(store, call("now", 1000, agent_id="support"), scope) == ["told support"]
    assert memory_key(call("x", 1, agent_id="sales"), "main") != memory_key(
        call("x", 1, agent_id="support"), "main"
    )


async def test_a_session_key_shares_memory_whatever_the_scope(store: SqliteStore) -> None:
    await store.save(call("order 42 for Ada", 100, to="+15555550111", session_key="order-42"))
    await store.save(call("order 42 again", 200, to="+15555550222", session_key="order-42"))
    await store.save(call("order 7", 300, to="+15555550123", session_key="order-7"))
    await store.save(call("plain call", 400, to="+15555550123"))
    keyed = call("now", 1000, to="+15555550333", session_key="order-42")
    # other numbers, and per-call scope: the key wins over sessionScope
    for scope in ("per-phone", "per-call", "main"):
        assert await texts(store, keyed, scope) == ["order 42 for Ada", "order 42 again"]
    # a call without a key does not read the keyed sessions
    assert await texts(store, call("now", 1000, to="+15555550123")) == ["plain call"]
    assert await texts(store, call("now", 1000), "main") == ["plain call"]
    # the key is the agent's: another agent's calls with the same key stay apart
    other = call("now", 1000, session_key="order-42", agent_id="sales")
    assert await texts(store, other) == []


async def test_records_stored_before_agent_and_session_key_load(
    store: SqliteStore, tmp_path: Path
) -> None:
    old = call("an old call", 100)
    await store.save(old)
    await store.save(call("a new call", 200, agent_id="main", session_key="k"))
    await store.close()
    with sqlite3.connect(tmp_path / "calls.db") as db:  # as an older version wrote it
        db.execute(
            "UPDATE calls SET record = json_remove(record, '$.agentId', '$.sessionKey')"
            " WHERE call_id = ?",
            (old.call_id,),
        )
        (raw,) = db.execute("SELECT record FROM calls WHERE call_id = ?", (old.call_id,)).fetchone()
    assert "agentId" not in raw and "sessionKey" not in raw
    await store.open()
    loaded = await store.get(old.call_id)
    assert loaded is not None and loaded.agent_id is None and loaded.session_key is None
    new = next(r for r in await store.list_recent() if r.call_id != old.call_id)
    assert (new.agent_id, new.session_key) == ("main", "k")
    # an old call counts as the default agent's
    assert await texts(store, call("now", 1000, agent_id="main")) == ["an old call"]
    assert await texts(store, call("now", 1000, agent_id="sales")) == []
