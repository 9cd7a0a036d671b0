"""kill -9 a real `voicecall serve` with three calls in flight, restart it: nothing is lost.

Every call must be reconciled (a `call.restored` entry), none dialed twice (the mock carrier's
ledger), every event applied before the crash still in the log, a replayed pre-crash webhook
refused as a duplicate, and the restored calls still controllable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port

CONFIG = """{
  provider: "mock",
  toNumber: "+15555550123",
  maxConcurrentCalls: 5,
  outbound: { defaultMode: "conversation" },
  serve: { port: %d },
  mock: { answerDelayMs: 50, replyDelayMs: 50, replies: ["only one line"] },
}
"""


class Server:
    def __init__(self, home: Path, port: int) -> None:
        self.home = home
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "VOICECALL_HOME": str(self.home)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voice_call.cli",
                "--config",
                str(self.home / "config.json5"),
                "serve",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("server did not become healthy")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        token = (self.home / "rpc-token").read_text().strip()
        reply = httpx.post(
            f"{self.url}/rpc",
            json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()
        assert "result" in reply, reply
        result: dict[str, Any] = reply["result"]
        return result

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self.rpc("voicecall.events", {"since": out[-1]["seq"] if out else 0})
            if not page["events"]:
                return out
            out.extend(page["events"])

    def wait(self, check: Any, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, "condition not reached"
            time.sleep(0.05)


def test_kill9_with_three_calls_in_flight(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "config.json5").write_text(CONFIG % port)
    server = Server(tmp_path, port)
    server.start()
    try:
        ids = [
            server.rpc("voicecall.initiate", {"message": f"Hello {n}"})["callId"] for n in range(3)
        ]

        def all_heard_reply() -> bool:
            for call_id in ids:
                call = server.rpc("voicecall.status", {"callId": call_id, "full": True})["call"]
                if not any(e["speaker"] == "user" for e in call["transcript"]):
                    return False
            return True

        server.wait(all_heard_reply)
        # a carrier webhook the server acknowledged before the crash
        hook = {
            "event": {"type": "call.dtmf", "callId": ids[0], "digits": "42", "dedupeKey": "k-42"}
        }
        first = httpx.post(f"{server.url}/voice/webhook", json=hook, timeout=5)
        assert first.status_code == 200
        before = server.events()
        assert any(e["dedupeKey"] == "k-42" for e in before if "dedupeKey" in e)
        server.kill9()

        server.start()
        after = server.events()
        after_by_seq = {e["seq"]: e for e in after}
        for event in before:  # nothing acknowledged was lost or rewritten
            assert after_by_seq[event["seq"]] == event
        restored = [e for e in after if e["type"] == "call.restored"]
        assert sorted(e["callId"] for e in restored) == sorted(ids)
        assert all(e["data"]["outcome"] == "kept" for e in restored)
        ledger = [
            json.loads(line) for line in (tmp_path / "mock-carrier.jsonl").read_text().splitlines()
        ]
        dials = Counter(row["callId"] for row in ledger if row["op"] == "dial")
        assert dials == Counter({call_id: 1 for call_id in ids})
        # the carrier retries the acknowledged webhook: a duplicate, nothing changes
        seq = after[-1]["seq"]
        again = httpx.post(f"{server.url}/voice/webhook", json=hook, timeout=5)
        assert again.status_code == 200 and again.json()["results"] == ["duplicate"]
        assert server.events()[-1]["seq"] == seq
        # the restored calls are live and still under control
        active = server.rpc("voicecall.status")["calls"]
        assert sorted(c["callId"] for c in active) == sorted(ids)
        for call_id in ids:
            assert server.rpc("voicecall.end", {"callId": call_id}) == {"success": True}
        assert server.rpc("voicecall.status")["calls"] == []
    finally:
        server.stop()
