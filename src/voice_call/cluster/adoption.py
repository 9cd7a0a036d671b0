"""The adoption sweep: every instance, every ADOPT_EVERY_S, takes over the calls whose owner died.

A call's owner holds its timers (max duration, notify hang-up) and runs the reaper and restore
for it, so those fire once across instances: ownership is claimed atomically (one instance
adopts an orphan, whoever else sweeps at the same moment), and the adopter re-arms the timers
from the record (`CallManager.adopt`). The router takes a call over on demand too (an event or
command for it arrives first); the sweep is for calls nothing happens on.

A streamed call whose media socket died with its instance cannot be carried on (a socket cannot
move): its owner ends it with a recorded reason (cluster/streams.py `end_if_stream_lost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from voice_call.cluster.router import ClusterRouter

log = logging.getLogger("voice_call.cluster.adoption")

ADOPT_EVERY_S = 2.0


class AdoptionSweep:
    def __init__(self, router: ClusterRouter, *, every_s: float = ADOPT_EVERY_S) -> None:
        self.router = router
        self.every_s = every_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="adoption")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.sweep()
            except Exception as exc:  # a Redis hiccup: the next sweep tries again
                log.warning("adoption sweep failed, retrying in %.0f s: %s", self.every_s, exc)

    async def sweep(self) -> list[str]:
        """Adopt the orphans among the live calls; end owned streamed calls whose stream died
        with its instance. Returns the ids adopted here."""
        router = self.router
        active = await router.manager.store.list_active()
        settled = [record.call_id for record in active if not router.is_new(record)]
        adopted = []
        for call_id in await router.cluster.ownership.orphans(settled):
            claim = await router.take(call_id)
            if claim.adopted:
                adopted.append(call_id)
        live = {record.call_id for record in active}
        for call_id in sorted(router.owned & live):
            await self._end_if_stream_lost(call_id)
        return adopted

    async def _end_if_stream_lost(self, call_id: str) -> None:
        from voice_call.cluster.streams import end_if_stream_lost

        router = self.router
        if await end_if_stream_lost(router.cluster, router.manager, call_id):
            log.info("call %s ended: its media stream died with its instance", call_id)
