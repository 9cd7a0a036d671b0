"""Who owns each call, and who holds its media stream.

`P:owner:{call}` names the instance whose CallManager holds the call's in-memory state. It has
no TTL: ownership ends with the call (release) or when its owner's instance key is gone, and
then the first instance to `claim` adopts it. Check-and-set runs as one Lua script, so two
instances claiming one orphan at once never both adopt it.

`P:stream:{call}` names the instance holding the call's media WebSocket. A socket cannot move,
so a dead holder is never replaced: the owner ends the call instead (dead_stream_holder).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from voice_call.cluster.instance import Instance

# ARGV: prefix, call id, my id. Returns {verdict, owner} with verdict mine | other | adopted
# (owner: the previous one for adopted, "" when there was none).
_CLAIM = """
local p, me = ARGV[1], ARGV[3]
local key = p .. ':owner:' .. ARGV[2]
local owner = redis.call('GET', key)
if owner == me then return {'mine', me} end
if owner and redis.call('EXISTS', p .. ':inst:' .. owner) == 1 then return {'other', owner} end
redis.call('SET', key, me)
return {'adopted', owner or ''}
"""

# ARGV: prefix, call ids... Returns the ids whose owner is missing or dead.
_ORPHANS = """
local p = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local owner = redis.call('GET', p .. ':owner:' .. ARGV[i])
  if not owner or redis.call('EXISTS', p .. ':inst:' .. owner) == 0 then
    out[#out + 1] = ARGV[i]
  end
end
return out
"""

# ARGV: key, my id. Deletes the key only while it names me (never another's newer claim).
_DELETE_IF_MINE = """
if redis.call('GET', ARGV[1]) == ARGV[2] then return redis.call('DEL', ARGV[1]) end
return 0
"""

# ARGV: prefix, call id. Returns {holder or "", 1 if its instance key exists else 0}.
_HOLDER = """
local p = ARGV[1]
local holder = redis.call('GET', p .. ':stream:' .. ARGV[2])
if not holder then return {'', 0} end
return {holder, redis.call('EXISTS', p .. ':inst:' .. holder)}
"""


@dataclass(frozen=True)
class Claim:
    mine: bool  # this instance owns the call now
    owner: str | None  # who owns it now (this id when mine)
    adopted: bool  # it just became mine because the owner was missing or dead
    previous: str | None  # the dead/missing owner it was taken from


class Ownership:
    """Call ownership and stream holding for one instance."""

    def __init__(self, redis: Redis, prefix: str, instance: Instance) -> None:
        self._redis = redis
        self._prefix = prefix
        self._instance = instance
        self._claim: AsyncScript = redis.register_script(_CLAIM)
        self._orphans: AsyncScript = redis.register_script(_ORPHANS)
        self._delete_if_mine: AsyncScript = redis.register_script(_DELETE_IF_MINE)
        self._holder: AsyncScript = redis.register_script(_HOLDER)

    @property
    def _me(self) -> str:
        return self._instance.id

    def _owner_key(self, call_id: str) -> str:
        return f"{self._prefix}:owner:{call_id}"

    def _stream_key(self, call_id: str) -> str:
        return f"{self._prefix}:stream:{call_id}"

    async def take_new(self, call_id: str) -> None:
        """A call created here (initiate / inbound): nobody else can know it yet."""
        await self._redis.set(self._owner_key(call_id), self._me)

    async def owner(self, call_id: str) -> str | None:
        """The recorded owner, alive or not."""
        owner = await self._redis.get(self._owner_key(call_id))
        return None if owner is None else str(owner)  # str: the client decodes responses

    async def claim(self, call_id: str) -> Claim:
        """Mine stays mine; a missing or dead owner's call becomes mine (adopted); a live
        other's stays theirs. One round trip, atomic."""
        verdict, owner = await self._claim(args=[self._prefix, call_id, self._me])
        if verdict == "mine":
            return Claim(mine=True, owner=self._me, adopted=False, previous=None)
        if verdict == "adopted":
            return Claim(mine=True, owner=self._me, adopted=True, previous=owner or None)
        return Claim(mine=False, owner=str(owner), adopted=False, previous=None)

    async def release(self, call_id: str) -> None:
        """The call ended: forget its owner (only if it is still this instance)."""
        await self._delete_if_mine(args=[self._owner_key(call_id), self._me])

    async def orphans(self, call_ids: Sequence[str]) -> list[str]:
        """Those of `call_ids` whose owner is missing or dead, in one round trip."""
        if not call_ids:
            return []
        found = await self._orphans(args=[self._prefix, *call_ids])
        return [str(call_id) for call_id in found]

    async def hold_stream(self, call_id: str) -> None:
        await self._redis.set(self._stream_key(call_id), self._me)

    async def drop_stream(self, call_id: str) -> None:
        await self._delete_if_mine(args=[self._stream_key(call_id), self._me])

    async def stream_holder(self, call_id: str) -> str | None:
        """The instance holding the call's media socket, if one is recorded and alive."""
        holder, alive = await self._stream(call_id)
        return holder if alive else None

    async def dead_stream_holder(self, call_id: str) -> str | None:
        """The recorded holder of the call's media socket when it is dead (the socket died
        with it: the call cannot be carried on), else None."""
        holder, alive = await self._stream(call_id)
        return holder if holder is not None and not alive else None

    async def _stream(self, call_id: str) -> tuple[str | None, bool]:
        holder, alive = await self._holder(args=[self._prefix, call_id])
        return (str(holder) or None), bool(int(alive))
