"""`chaos`: kill -9 a busy `voicecall serve` at random moments, restart it, lose nothing.

The server (Twilio provider, echo auto-responder, SQLite store) runs in a child process; the
Twilio emulator lives here and carries on while the server is dead, as Twilio would: its calls
keep ringing, talking and hanging up, and webhooks it sends meanwhile fail (Twilio does not
retry them). A placer keeps CALLS calls live in mixed states — conversations driven by the echo
responder, notify calls, busy, unanswered, failed, and silent callers who stay on the line —
while the server is killed KILLS times at a random moment (`random.Random(seed)`) and
restarted straight away. Afterwards, with the server up once more:

1. no call was dialed twice: the emulator's own ledger of create-call requests names each of
   our call ids at most once (and every dial has a record: persisted before dialing);
2. every call is terminal, or live in the store and live at the emulator ("correctly live");
   an ended call at the carrier is ended in the store (restore reconciles what was missed);
3. every webhook the emulator delivered and got a 2xx for has its events in the store's log
   (compared by the dedupe key the server derives from the verified request);
4. the calls still live answer `voicecall.end`, and end at the carrier.

`python -m bench chaos` runs the full plan (50 calls, 20 kills); `--smoke` and
tests/test_chaos.py a short one. `VOICECALL_CHAOS_SEED` picks another seed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.server_process import ServerProcess, free_port
from bench.twilio_bench import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    RecordingTwilio,
    count_events,
    expected_keys,
    server_config,
    stored_keys,
    webhook_url,
)
from voice_call.client.rpc import RpcClient
from voice_call.errors import VoiceCallError
from voice_call.models import CallRecord
from voice_call.security.rpc_token import read_rpc_token
from voice_call.sim.callee import CalleeScript
from voice_call.store.sqlite import SqliteStore

LINES = ("Hi, this is Sam.", "Tuesday at three works.", "That is all, thanks, bye.")
# kind → (callee script, mode, share of the calls placed)
KINDS: dict[str, tuple[CalleeScript, str, float]] = {
    "echo": (
        CalleeScript(
            answer_delay_ms=1500, replies=LINES, reply_delay_ms=1500, hangup_after_turns=3
        ),
        "conversation",
        0.4,
    ),
    "notify": (CalleeScript(answer_delay_ms=1500), "notify", 0.2),
    "busy": (CalleeScript(outcome="busy", answer_delay_ms=2000), "conversation", 0.1),
    "no-answer": (CalleeScript(outcome="no-answer"), "conversation", 0.1),
    "failed": (CalleeScript(outcome="failed"), "conversation", 0.05),
    "silent": (CalleeScript(answer_delay_ms=1500, silent=True), "conversation", 0.15),
}
KIND_CODES = {kind: index for index, kind in enumerate(KINDS)}
UP_S = (0.5, 3.0)  # how long the server runs before each kill (uniform, seconds)


def number(kind: str, serial: int) -> str:
    """The callee's number carries its kind, so the emulator can pick its script."""
    return f"+1555{KIND_CODES[kind]:02d}{serial:05d}"


def kind_of(to_number: str) -> str:
    return list(KINDS)[int(to_number[5:7])]


def script_for(to_number: str) -> CalleeScript:
    return KINDS[kind_of(to_number)][0]


@dataclass
class ChaosResult:
    kills: int = 0
    restarts: int = 0
    restored: int = 0  # `call.restored` entries: calls reconciled with the carrier on a start
    placed: int = 0  # initiate requests answered with a call id
    uncertain: int = 0  # initiate requests cut off by a kill (dialed or not: we cannot know)
    dialed: int = 0
    delivered: int = 0  # webhooks answered 2xx
    lost_in_flight: int = 0  # webhooks that met a dead server (no answer)
    events_checked: int = 0
    peak_live: int = 0  # the most calls live at the carrier at once
    live_at_end: int = 0
    ended_by_rpc: int = 0
    states: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


class Chaos:
    def __init__(
        self, calls: int, kills: int, seed: int, scale: float, home: Path, budget: int
    ) -> None:
        self.calls = calls
        self.kills = kills
        self.rng = random.Random(seed)
        self.scale = scale
        self.home = home
        self.budget = budget  # calls placed in all
        self.result = ChaosResult()
        self.up = asyncio.Event()
        self.stopping = False
        self.placing = 0
        self.serial = 0
        self.emu = RecordingTwilio(
            ACCOUNT_SID, AUTH_TOKEN, script=script_for, time_scale=scale, sources=8
        )
        self.port = free_port()
        self.server: ServerProcess | None = None
        self._rpc: RpcClient | None = None

    @property
    def rpc(self) -> RpcClient:
        if self._rpc is None:
            token = read_rpc_token(self.home)
            assert token is not None, "the server writes its RPC token when it starts"
            self._rpc = RpcClient(f"http://127.0.0.1:{self.port}", token, timeout=30)
        return self._rpc

    def _live(self) -> int:
        return self.placing + sum(1 for c in self.emu.calls.values() if not c.ended.is_set())

    def _pick(self) -> str:
        kinds = list(KINDS)
        return self.rng.choices(kinds, weights=[KINDS[k][2] for k in kinds])[0]

    async def _place_one(self) -> None:
        kind = self._pick()
        self.serial += 1
        to = number(kind, self.serial)
        self.placing += 1
        try:
            await self.rpc.call(
                "voicecall.initiate",
                {"to": to, "message": f"Hello {kind} caller.", "mode": KINDS[kind][1]},
            )
            self.result.placed += 1
        except VoiceCallError:
            self.result.uncertain += 1  # cut off by a kill: never retried (that would redial)
        finally:
            self.placing -= 1

    async def placer(self) -> None:
        """Keep `calls` calls live until `budget` have been asked for."""
        tasks: set[asyncio.Task[None]] = set()
        asked = 0
        while asked < self.budget and not self.stopping:
            await self.up.wait()
            live = self._live()
            self.result.peak_live = max(self.result.peak_live, live - self.placing)
            if live >= self.calls:
                await asyncio.sleep(0.02)
                continue
            asked += 1
            task = asyncio.create_task(self._place_one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.01)  # ~100 dials a second at most, as a busy agent might
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _start(self) -> None:
        assert self.server is not None
        await self.server.start()
        self.result.restarts = self.server.starts - 1
        self.up.set()

    async def _kill(self) -> None:
        assert self.server is not None
        self.up.clear()
        await self.server.kill9()
        self.result.kills += 1

    async def run(self) -> ChaosResult:
        started = time.monotonic()
        async with self.emu:
            config = server_config(
                self.emu.url,
                self.port,
                maxConcurrentCalls=self.calls * 4,
                maxDurationSeconds=3600,
                ringTimeoutMs=4000,
                responder={"provider": "echo"},
            )
            self.server = ServerProcess(self.home, config)
            await self._start()
            placer = asyncio.create_task(self.placer())
            try:
                for _ in range(self.kills):
                    await asyncio.sleep(self.rng.uniform(*UP_S))
                    await self._kill()
                    await self._start()
                self.stopping = True
                await placer
                await self._settle()
                self._check_events()
                await self._end_live_calls()
            finally:
                placer.cancel()
                await asyncio.gather(placer, return_exceptions=True)
                await self.server.stop()
        self.result.wall_s = time.monotonic() - started
        return self.result

    # ------------------------------------------------------------------ checks

    async def _records(self) -> list[CallRecord]:
        store = await SqliteStore.open_readonly(self.home / "calls.db")
        try:
            return await store.list_recent(limit=100_000)
        finally:
            await store.close()

    def _disagreements(self, records: list[CallRecord]) -> list[str]:
        """Calls whose store state and carrier state disagree (empty once settled)."""
        out = []
        for record in records:
            call = self.emu.calls.get(record.provider_call_id or "")
            carrier_live = call is not None and not call.ended.is_set()
            if record.terminal and carrier_live:
                out.append(f"{record.call_id} ended in the store, live at the carrier")
            elif not record.terminal and not carrier_live:
                out.append(f"{record.call_id} {record.state.value} in the store, not at carrier")
            elif record.state.live and call is not None and call.answered_at is None:
                out.append(f"{record.call_id} {record.state.value}, unanswered at carrier")
        return out

    async def _settle(self) -> None:
        """Wait until the finite calls are over and store and carrier agree on the rest."""
        finite = [
            d for d in self.emu.dialed if kind_of(d.to) != "silent" and d.sid in self.emu.calls
        ]
        deadline = 60 + 120 * self.scale
        await asyncio.wait_for(
            asyncio.gather(*(self.emu.calls[d.sid].ended.wait() for d in finite)), deadline
        )
        until = time.monotonic() + 30
        while True:
            records = await self._records()
            disagreements = self._disagreements(records)
            if not disagreements or time.monotonic() > until:
                break
            await asyncio.sleep(0.1)
        self.result.problems += disagreements
        self.result.states = Counter(r.state.value for r in records)
        self.result.live_at_end = sum(1 for r in records if not r.terminal)
        self.result.dialed = len(self.emu.dialed)
        ids = Counter(d.call_id for d in self.emu.dialed)
        twice = [call_id for call_id, n in ids.items() if n > 1]
        if twice:
            self.result.problems.append(f"dialed more than once: {twice}")
        known = {r.call_id for r in records}
        unrecorded = [call_id for call_id in ids if call_id not in known]
        if unrecorded:
            self.result.problems.append(f"dialed without a record: {unrecorded}")

    def _check_events(self) -> None:
        db = self.home / "calls.db"
        keys = stored_keys(db)
        self.result.restored = count_events(db, "call.restored")
        url = webhook_url(self.port)
        for hook in self.emu.webhooks:
            if hook.status_code is None:
                self.result.lost_in_flight += 1
                continue
            if hook.status_code >= 300:
                continue  # refused: the carrier knows it was not taken
            self.result.delivered += 1
            for key in expected_keys(hook, url):
                self.result.events_checked += 1
                if key not in keys:
                    self.result.problems.append(
                        f"{hook.kind} {hook.params.get('CallStatus')} for "
                        f"{hook.params.get('CallSid')} answered {hook.status_code} but not stored"
                    )

    async def _end_live_calls(self) -> None:
        records = [r for r in await self._records() if not r.terminal]
        for record in records:
            await self.rpc.call("voicecall.end", {"callId": record.call_id})
            call = self.emu.calls[record.provider_call_id or ""]
            try:
                await asyncio.wait_for(call.ended.wait(), 10)
            except TimeoutError:
                self.result.problems.append(f"{record.call_id} did not end at the carrier")
            self.result.ended_by_rpc += 1


async def run_chaos(
    calls: int, kills: int, seed: int, scale: float, workdir: Path, budget: int | None = None
) -> ChaosResult:
    # A kill cuts the server's REST requests short; the emulator's ASGI server logs each with
    # a traceback. That is the point of the exercise, not news.
    uvicorn_log = logging.getLogger("uvicorn.error")
    level = uvicorn_log.level
    uvicorn_log.setLevel(logging.CRITICAL)
    try:
        chaos = Chaos(calls, kills, seed, scale, workdir / "home", budget or calls * 3)
        return await chaos.run()
    finally:
        uvicorn_log.setLevel(level)


def run(smoke: bool) -> list[dict[str, Any]]:
    calls, kills = (10, 3) if smoke else (50, 20)
    seed = int(os.environ.get("VOICECALL_CHAOS_SEED", "20"))
    with tempfile.TemporaryDirectory(prefix="voicecall-chaos-") as tmp:
        result = asyncio.run(run_chaos(calls, kills, seed, 0.2, Path(tmp)))
    row = {
        "calls live (target)": calls,
        "peak live": result.peak_live,
        "seed": seed,
        "kill -9": result.kills,
        "restarts survived": f"{result.restarts}/{result.kills}",
        "calls placed": result.placed,
        "initiates cut off": result.uncertain,
        "dials (ledger)": result.dialed,
        "dialed twice": sum(1 for p in result.problems if "more than once" in p),
        "webhooks 2xx": result.delivered,
        "met a dead server": result.lost_in_flight,
        "events checked": result.events_checked,
        "calls restored": result.restored,
        "problems": len(result.problems),
        "live at end → ended": f"{result.live_at_end} → {result.ended_by_rpc}",
        "wall s": round(result.wall_s, 1),
    }
    if not result.ok:
        for problem in result.problems[:20]:
            print("PROBLEM:", problem)
    return [row]
