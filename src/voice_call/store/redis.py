"""The scale-out CallStore: one Redis (asyncio client of the `redis` package, hiredis parser),
shared by every instance of a deployment.

Keys, all under `<prefix>:` (`store.prefix`, so deployments can share one Redis):

- `call:<id>`: a hash — `record` (the CallRecord JSON without its transcript, as SQLite keeps
  it), `pidx` (the name of its provider-call-id index key, "" when it has none), `terminal`.
- `tx:<id>`: the transcript, a list of `[at, speaker, text, final]` JSON entries. Append-only
  like SQLite's table: a save pushes only the entries past the stored length.
- `pcid:<len>:<provider>:<provider call id>`: a sorted set of call ids by start time (the newest
  is the answer of `find_by_provider_call_id`).
- `active` (non-terminal calls by start), `recent` (every call by start), `ended` (terminal calls
  by end, or start when they have no end): sorted sets, the indexes SQLite's columns give.
- `seq`: the event-log counter (INCR; never reused, even after `prune`).
- `events`: the append-only event log, a Stream whose entry ids are `<seq>-0`, so a reader pages
  it with the same integer cursor as SQLite's seq; `events:<id>` holds the same entries of one
  call (the `call_id` filter, and what `prune` removes from `events`).
- `dk:<dedupe key>`: set once (the check and the write are in one script) and remembered in the
  call's `keys:<id>` set. As in SQLite a key lives as long as its call's events: `prune` deletes
  it. When the call ends its keys also get a TTL (`dedupe_ttl_s`, the retention window plus a
  margin), so a deployment that never prunes does not keep them forever.

Atomicity: every write is one Lua script (Redis runs a script alone, start to end). A save checks
the dedupe key before writing anything, so a duplicate writes nothing, and the record, its
transcript, its event and its key land together. Two instances saving at once get dense,
ordered seqs from the one counter.

Durability: an acknowledged save is in Redis's memory, and on disk as the server's persistence
says (`appendonly yes` with `appendfsync everysec` loses at most a second on a server crash).
The client never retries a command by itself: a retried script could log an event twice.

The scripts build key names from the prefix, so the store needs one Redis (a primary, with or
without replicas), not Redis Cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from voice_call.errors import Unavailable
from voice_call.models import CallRecord, Speaker, TranscriptEntry
from voice_call.store.base import DuplicateEvent, LoggedEvent, StoreClosed

DEFAULT_PREFIX = "voicecall"
CONNECT_TIMEOUT_S = 5.0
_PRUNE_BATCH = 500
_DUPLICATE = -1

# ARGV: prefix, call id, snapshot, pidx key, started, terminal, end score, event call id,
# dedupe key ("" none), event JSON ("" none), dedupe TTL ms ("0" none), transcript entries...
_SAVE = """
local p, id = ARGV[1], ARGV[2]
local dk, ev = ARGV[9], ARGV[10]
if dk ~= '' and redis.call('EXISTS', dk) == 1 then return -1 end
local seq = 0
if ev ~= '' then
  seq = redis.call('INCR', p .. 'seq')
  local sid = string.format('%d-0', seq)
  redis.call('XADD', p .. 'events', sid, 'e', ev)
  redis.call('XADD', p .. 'events:' .. ARGV[8], sid, 'e', ev)
end
local call = p .. 'call:' .. id
local old = redis.call('HMGET', call, 'pidx', 'terminal')
local pidx, started, terminal = ARGV[4], ARGV[5], ARGV[6]
if old[1] and old[1] ~= '' and old[1] ~= pidx then redis.call('ZREM', old[1], id) end
if pidx ~= '' then redis.call('ZADD', pidx, started, id) end
redis.call('ZADD', p .. 'recent', started, id)
if terminal == '1' then
  redis.call('ZREM', p .. 'active', id)
  redis.call('ZADD', p .. 'ended', ARGV[7], id)
else
  redis.call('ZADD', p .. 'active', started, id)
  redis.call('ZREM', p .. 'ended', id)
end
redis.call('HSET', call, 'record', ARGV[3], 'pidx', pidx, 'terminal', terminal)
local tx = p .. 'tx:' .. id
for i = redis.call('LLEN', tx) + 12, #ARGV do redis.call('RPUSH', tx, ARGV[i]) end
local keys = p .. 'keys:' .. ARGV[8]
if dk ~= '' then
  redis.call('SET', dk, ARGV[8])
  redis.call('SADD', keys, dk)
end
local ttl = tonumber(ARGV[11])
if terminal == '1' and ttl > 0 then
  if old[2] ~= '1' then
    for _, key in ipairs(redis.call('SMEMBERS', p .. 'keys:' .. id)) do
      redis.call('PEXPIRE', key, ttl)
    end
  end
  if dk ~= '' then redis.call('PEXPIRE', dk, ttl) end
end
return seq
"""

# ARGV: prefix, ended before (exclusive), batch size. Returns how many calls it deleted.
_PRUNE = """
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', p .. 'ended', '-inf', '(' .. ARGV[2],
  'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local own = p .. 'events:' .. id
  for _, entry in ipairs(redis.call('XRANGE', own, '-', '+')) do
    redis.call('XDEL', p .. 'events', entry[1])
  end
  local keys = p .. 'keys:' .. id
  for _, key in ipairs(redis.call('SMEMBERS', keys)) do redis.call('DEL', key) end
  local call = p .. 'call:' .. id
  local pidx = redis.call('HGET', call, 'pidx')
  if pidx and pidx ~= '' then redis.call('ZREM', pidx, id) end
  redis.call('DEL', own, keys, call, p .. 'tx:' .. id)
  redis.call('ZREM', p .. 'recent', id)
  redis.call('ZREM', p .. 'ended', id)
  redis.call('ZREM', p .. 'active', id)
end
return #ids
"""

# ARGV: prefix, how ("one" | "asc" | "desc"), call id or index key, stop index.
# Returns record, transcript, record, transcript... (read in one go, so never half a save).
_FETCH = """
local p, how = ARGV[1], ARGV[2]
local ids
if how == 'one' then ids = {ARGV[3]}
elseif how == 'asc' then ids = redis.call('ZRANGE', ARGV[3], 0, tonumber(ARGV[4]))
else ids = redis.call('ZREVRANGE', ARGV[3], 0, tonumber(ARGV[4])) end
local out = {}
for _, id in ipairs(ids) do
  local record = redis.call('HGET', p .. 'call:' .. id, 'record')
  if record then
    out[#out + 1] = record
    out[#out + 1] = redis.call('LRANGE', p .. 'tx:' .. id, 0, -1)
  end
end
return out
"""


class RedisStore:
    """CallStore on Redis. `await store.open()` before use (it connects and checks the server);
    `close()` when done.

    `dedupe_ttl_s`: how long an ended call's dedupe keys are kept at most (None: until pruned).
    """

    def __init__(
        self, url: str, *, prefix: str = DEFAULT_PREFIX, dedupe_ttl_s: float | None = None
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.dedupe_ttl_s = dedupe_ttl_s
        self._p = f"{prefix}:"
        self._client: Redis | None = None
        self._save: AsyncScript | None = None
        self._prune: AsyncScript | None = None
        self._fetch: AsyncScript | None = None

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Connect and check that the server answers. Idempotent.

        An unreachable or refusing server is an Unavailable naming where (without credentials),
        not a redis traceback."""
        if self._client is not None:
            return
        client = Redis.from_url(
            self.url,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise Unavailable(
                f"cannot reach the Redis call store at {where(self.url)}: {exc} — start Redis"
                " there or fix store.url"
            ) from None
        self._save = client.register_script(_SAVE)
        self._prune = client.register_script(_PRUNE)
        self._fetch = client.register_script(_FETCH)
        self._client = client

    async def close(self) -> None:
        """Disconnect. Idempotent; the store may be opened again."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _live(self) -> Redis:
        if self._client is None:
            raise StoreClosed("call store is not open")
        return self._client

    def _script(self, script: AsyncScript | None) -> AsyncScript:
        self._live()
        assert script is not None  # registered by open()
        return script

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """A Redis that is down, full or read-only is an Unavailable (a 503 for the webhook, so
        the carrier retries), not a redis traceback."""
        try:
            yield
        except RedisError as exc:
            raise Unavailable(
                f"the Redis call store at {where(self.url)} failed: {exc} — check that it runs"
                " and accepts writes"
            ) from None

    # ------------------------------------------------------------------ writes

    async def save(
        self, record: CallRecord, event: LoggedEvent | None = None
    ) -> LoggedEvent | None:
        """Atomically upsert the snapshot, append new transcript entries and the event.

        Raises DuplicateEvent (writing nothing) when `event.dedupe_key` was stored before.
        Returns a copy of the event with `seq` set (and `state` set to the record's state when
        the event had none), or None when no event was given. Transcript entries already
        stored are never rewritten (as in SQLite).
        """
        script = self._script(self._save)
        state = record.state.value
        event_json = dedupe = event_call = ""
        if event is not None:
            state = event.state if event.state is not None else state
            event_json = _event_json(event, state)
            event_call = event.call_id
            if event.dedupe_key is not None:
                dedupe = self._key("dk:", event.dedupe_key)
        ttl_ms = round(self.dedupe_ttl_s * 1000) if self.dedupe_ttl_s else 0
        pidx = ""
        if record.provider_call_id is not None:
            provider = record.provider
            pidx = self._key(f"pcid:{len(provider)}:{provider}:", record.provider_call_id)
        end = record.ended_at if record.ended_at is not None else record.started_at
        args: list[Any] = [
            self._p,
            record.call_id,
            record.model_dump_json(by_alias=True, exclude={"transcript"}),
            pidx,
            repr(record.started_at),
            "1" if record.terminal else "0",
            repr(end),
            event_call,
            dedupe,
            event_json,
            str(ttl_ms),
        ]
        args.extend(_entry_json(entry) for entry in record.transcript)
        with self._answering():
            seq = int(await script(args=args))
        if seq == _DUPLICATE:
            assert event is not None
            raise DuplicateEvent(event.dedupe_key)
        if event is None:
            return None
        return event.model_copy(update={"seq": seq, "state": state})

    async def prune(self, ended_before: float) -> int:
        """Delete terminal calls that ended before this time, with their transcript, events and
        dedupe keys (a terminal call without `ended_at` counts as ending when it started).
        Returns how many calls were deleted."""
        script = self._script(self._prune)
        removed = 0
        while True:
            with self._answering():
                batch = int(await script(args=[self._p, repr(ended_before), _PRUNE_BATCH]))
            removed += batch
            if batch < _PRUNE_BATCH:
                return removed

    # ------------------------------------------------------------------ reads

    async def get(self, call_id: str) -> CallRecord | None:
        records = await self._records("one", call_id)
        return records[0] if records else None

    async def find_by_provider_call_id(
        self, provider: str, provider_call_id: str
    ) -> CallRecord | None:
        index = self._key(f"pcid:{len(provider)}:{provider}:", provider_call_id)
        records = await self._records("desc", index, 0)
        return records[0] if records else None

    async def list_active(self) -> list[CallRecord]:
        """Every non-terminal call, oldest first (ties by call id, as SQLite orders them)."""
        return await self._records("asc", self._p + "active", -1)

    async def list_recent(self, limit: int = 50) -> list[CallRecord]:
        """Most recently started calls first, any state."""
        if limit <= 0:
            return []
        return await self._records("desc", self._p + "recent", limit - 1)

    async def seen(self, dedupe_key: str) -> bool:
        """True when an event with this dedupe key was applied (and not pruned or expired)."""
        client = self._live()
        with self._answering():
            return bool(await client.exists(self._key("dk:", dedupe_key)))

    async def events(
        self, *, since_seq: int = 0, call_id: str | None = None, limit: int = 1000
    ) -> list[LoggedEvent]:
        """Event-log entries with seq > since_seq, in order."""
        client = self._live()
        if limit <= 0:
            return []
        stream = self._p + "events" if call_id is None else self._key("events:", call_id)
        start = f"{max(0, since_seq) + 1}-0"
        # [(id, {field: value})], str throughout: the client decodes responses
        with self._answering():
            entries: Any = await client.xrange(stream, min=start, max="+", count=limit)
        return [logged_event(entry_id, fields["e"]) for entry_id, fields in entries]

    async def last_seq(self) -> int:
        """The highest seq ever assigned (0 when none); it does not go down after `prune`."""
        client = self._live()
        with self._answering():
            value = await client.get(self._p + "seq")
        return int(value) if value is not None else 0

    async def _records(self, how: str, target: str, stop: int = 0) -> list[CallRecord]:
        script = self._script(self._fetch)
        with self._answering():
            flat = await script(args=[self._p, how, target, stop])
        records: list[CallRecord] = []
        for record_json, transcript in zip(flat[::2], flat[1::2], strict=True):
            record = CallRecord.model_validate_json(record_json)
            record.transcript.extend(_entry(raw) for raw in transcript)
            records.append(record)
        return records

    def _key(self, kind: str, name: str) -> str:
        return f"{self._p}{kind}{name}"


def where(url: str) -> str:
    """The URL without credentials, for messages."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _event_json(event: LoggedEvent, state: str) -> str:
    row = {
        "c": event.call_id,
        "t": event.type,
        "a": event.at,
        "k": event.dedupe_key,
        "s": state,
        "d": event.data,
    }
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def logged_event(entry_id: str, raw: str) -> LoggedEvent:
    """One entry of the event-log Stream (id `<seq>-0`, the JSON in field `e`), as the store
    and the cluster's event feed read it."""
    row = json.loads(raw)
    return LoggedEvent(
        seq=int(entry_id.partition("-")[0]),
        call_id=row["c"],
        type=row["t"],
        at=row["a"],
        dedupe_key=row["k"],
        state=row["s"],
        data=row["d"],
    )


def _entry_json(entry: TranscriptEntry) -> str:
    row = [entry.at, entry.speaker.value, entry.text, entry.final]
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def _entry(raw: str) -> TranscriptEntry:
    at, speaker, text, final = json.loads(raw)
    return TranscriptEntry(at=at, speaker=Speaker(speaker), text=text, final=final)
