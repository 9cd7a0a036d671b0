"""`load`: many concurrent emulated conversation calls end to end on one `voicecall serve`.

The server (`voicecall serve`, Twilio provider, echo auto-responder, SQLite store) runs in its
own process pinned to core 0; this process, pinned to core 1, hosts the Twilio emulator and
places the calls over JSON-RPC. Every callee answers, says three lines (each after the bot has
spoken: the greeting, then the echo of its previous line) and hangs up on hearing the third
echo. Twilio's native speech path: TwiML <Gather>/<Say> documents, live updates over REST,
signed status callbacks and Gather actions; the emulator sends webhooks from many loopback
addresses, as Twilio's edge does.

Checked, not just timed: every call was dialed once (the emulator's ledger), ended, and has its
whole transcript (user lines = what the callee said, bot lines = what it heard); every webhook
that got a 2xx has its events in the store (by dedupe key). Reported: the most calls live at
once, the server's CPU (share of its one core) and memory, and the turn figures the manager
recorded.

Knobs: `VOICECALL_BENCH_LOAD_CALLS` (default 200), `VOICECALL_BENCH_LOAD_SCALE` (emulated
time per real second, default 0.5: a call's ~14 emulated seconds take ~7 real ones).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.http_load import percentile
from bench.server_process import ServerProcess, free_port, pin
from bench.twilio_bench import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    RecordingTwilio,
    expected_keys,
    server_config,
    stored_keys,
    webhook_url,
)
from voice_call.client.rpc import RpcClient
from voice_call.models import CallRecord, Speaker, TurnKind
from voice_call.security.rpc_token import read_rpc_token
from voice_call.sim.callee import CalleeScript
from voice_call.store.sqlite import SqliteStore

GREETING = "Hello, this is the clinic calling about your appointment next week."
LINES = ("Hi, this is Sam speaking.", "Tuesday at three works for me.", "No, that is all, bye.")
CALLEE = CalleeScript(
    answer_delay_ms=1000, replies=LINES, reply_delay_ms=1000, hangup_after_turns=len(LINES)
)
PLACE_CONCURRENCY = 16
SOURCES = 32  # loopback addresses the emulator's webhooks come from


class Sampler:
    """Samples the server's RSS and the emulator's live calls while the run lasts."""

    def __init__(self, server: ServerProcess, emu: RecordingTwilio) -> None:
        self.server = server
        self.emu = emu
        self.peak_live = 0
        self.rss_at_peak = 0.0

    async def run(self) -> None:
        while True:
            live = sum(1 for c in self.emu.calls.values() if c.answered_at and not c.ended.is_set())
            if live >= self.peak_live:
                self.peak_live, self.rss_at_peak = live, self.server.rss_mib()
            await asyncio.sleep(0.1)


def _check_call(call_id: str, record: CallRecord | None, emu: RecordingTwilio) -> str | None:
    """Why this call's record is incomplete, or None when it is whole."""
    if record is None:
        return f"{call_id} is not in the store"
    if not record.terminal:
        return f"{record.call_id} still {record.state.value}"
    if record.provider_call_id is None or record.provider_call_id not in emu.calls:
        return f"{record.call_id} has no emulated call"
    callee = emu.calls[record.provider_call_id].callee
    said = [e.text for e in record.transcript if e.speaker == Speaker.USER]
    spoke = [e.text for e in record.transcript if e.speaker == Speaker.BOT]
    if said != callee.said or said != list(LINES):
        return f"{record.call_id}: user lines {said} != said {callee.said}"
    if spoke != callee.heard:
        return f"{record.call_id}: bot lines {spoke} != heard {callee.heard}"
    return None


async def _place(rpc: RpcClient, count: int) -> list[str]:
    gate = asyncio.Semaphore(PLACE_CONCURRENCY)

    async def one(index: int) -> str:
        async with gate:
            reply = await rpc.call(
                "voicecall.initiate",
                {"to": f"+1555{index:07d}", "message": GREETING, "mode": "conversation"},
            )
            return str(reply["callId"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _measure(smoke: bool) -> list[dict[str, Any]]:
    calls = 10 if smoke else int(os.environ.get("VOICECALL_BENCH_LOAD_CALLS", "200"))
    scale = 0.1 if smoke else float(os.environ.get("VOICECALL_BENCH_LOAD_SCALE", "0.5"))
    pin(1)
    with tempfile.TemporaryDirectory(prefix="voicecall-load-") as tmp:
        home = Path(tmp) / "home"
        emu = RecordingTwilio(
            ACCOUNT_SID, AUTH_TOKEN, script=CALLEE, time_scale=scale, sources=SOURCES
        )
        async with emu:
            port = free_port()
            config = server_config(
                emu.url,
                port,
                maxConcurrentCalls=calls,
                maxDurationSeconds=3600,
                responder={"provider": "echo"},
            )
            server = ServerProcess(home, config, core=0)
            await server.start()
            sampler = Sampler(server, emu)
            sampling = asyncio.create_task(sampler.run())
            try:
                token = read_rpc_token(home)
                assert token is not None
                rpc = RpcClient(f"http://127.0.0.1:{port}", token, timeout=60)
                cpu, started = server.cpu_seconds(), time.monotonic()
                call_ids = await _place(rpc, calls)
                await asyncio.gather(*(emu.wait_ended(d.sid, 600) for d in emu.dialed))
                # every `completed` callback has had its answer: the store is final now
                run = Run(time.monotonic() - started, server.cpu_seconds() - cpu)
                run.peak_rss = server.peak_rss_mib()
            finally:
                sampling.cancel()
                await server.stop()
        db = home / "calls.db"
        store = await SqliteStore.open_readonly(db)
        try:
            records = [await store.get(call_id) for call_id in call_ids]
        finally:
            await store.close()
        keys = stored_keys(db)
    problems = [
        problem
        for call_id, record in zip(call_ids, records, strict=True)
        if (problem := _check_call(call_id, record, emu)) is not None
    ]
    delivered = [h for h in emu.webhooks if h.status_code is not None and h.status_code < 300]
    missing = [
        key for h in delivered for key in expected_keys(h, webhook_url(port)) if key not in keys
    ]
    ledger = [d.call_id for d in emu.dialed]
    if problems or missing or sorted(ledger) != sorted(call_ids):
        raise AssertionError(
            f"{len(problems)} incomplete calls {problems[:3]}, {len(missing)} events missing,"
            f" {len(ledger)} dials for {len(call_ids)} calls"
        )
    return _report(calls, emu, [r for r in records if r is not None], run, sampler, len(keys))


class Run:
    def __init__(self, wall_s: float, cpu_s: float) -> None:
        self.wall_s = wall_s
        self.cpu_s = cpu_s
        self.peak_rss = 0.0


def _report(
    calls: int,
    emu: RecordingTwilio,
    records: list[CallRecord],
    run: Run,
    sampler: Sampler,
    events: int,
) -> list[dict[str, Any]]:
    turns = [t for r in records for t in r.latency if t.kind == TurnKind.REPLY]
    v2v = [t.voice_to_voice_ms for t in turns if t.voice_to_voice_ms is not None]
    statuses = [h.status_code for h in emu.webhooks]
    return [
        {
            "calls": calls,
            "peak live": sampler.peak_live,
            "complete transcripts": f"{len(records)}/{calls}",
            "webhooks 2xx": sum(1 for s in statuses if s is not None and s < 300),
            "non-2xx / failed": sum(1 for s in statuses if s is None or s >= 300),
            "events stored": events,
            "wall s": round(run.wall_s, 1),
            "server CPU (1 core)": f"{run.cpu_s / run.wall_s:.0%}",
            "RSS at peak MiB": round(sampler.rss_at_peak, 1),
            "peak RSS MiB": round(run.peak_rss, 1),
            "reply turns": len(turns),
            "v2v p50 ms": round(percentile(v2v, 50), 2),
            "v2v p99 ms": round(percentile(v2v, 99), 2),
        }
    ]


def run(smoke: bool) -> list[dict[str, Any]]:
    return asyncio.run(_measure(smoke))
