"""A whole mock-provider call through `voicecall serve` on a Redis store, as a user runs it:
the call, its transcript and its event log are in Redis (no SQLite file), the CLI reads them
through the server, and after a kill -9 a restarted server finds everything there, takes over the
call in flight (once the dead instance's key expired), and refuses the replay of a webhook it
acknowledged before."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx

from tests.cli.stack import base_env
from tests.store.redis_server import RedisServer
from tests.store.test_crash_restart import Server
from tests.support import free_port

CONFIG = """{
  provider: "mock",
  toNumber: "+15555550123",
  outbound: { defaultMode: "conversation" },
  serve: { port: %d },
  mock: { answerDelayMs: 50, replyDelayMs: 50, replies: ["only one line"] },
  store: { backend: "redis", url: "%s", prefix: "%s" },
  streaming: { tokenSecret: "a-shared-secret-of-32-characters" },
}
"""


def heard_reply(server: Server, call_id: str) -> bool:
    call = server.rpc("voicecall.status", {"callId": call_id, "full": True})["call"]
    return any(e["speaker"] == "user" for e in call["transcript"])


def test_a_call_on_redis_end_to_end_and_across_a_kill9(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    port, prefix = free_port(), RedisServer.prefix()
    (tmp_path / "config.json5").write_text(CONFIG % (port, redis_server.url, prefix))
    server = Server(tmp_path, port)
    server.start()
    try:
        done_id = server.rpc("voicecall.initiate", {"message": "Hello there"})["callId"]
        server.wait(lambda: heard_reply(server, done_id))
        assert server.rpc("voicecall.end", {"callId": done_id}) == {"success": True}
        live_id = server.rpc("voicecall.initiate", {"message": "Still here?"})["callId"]
        server.wait(lambda: heard_reply(server, live_id))
        hook = {"event": {"type": "call.dtmf", "callId": live_id, "digits": "7", "dedupeKey": "d7"}}
        assert httpx.post(f"{server.url}/voice/webhook", json=hook, timeout=5).status_code == 200

        done = server.rpc("voicecall.status", {"callId": done_id, "full": True})["call"]
        assert done["state"] not in ("active", "listening", "speaking")
        assert [e["text"] for e in done["transcript"]] == ["Hello there", "only one line"]
        # The CLI, as a user runs it, reads the call through the server.
        env = {**base_env(tmp_path), "VOICECALL_HOME": str(tmp_path)}
        cli = [sys.executable, "-m", "voice_call.cli", "--config", str(tmp_path / "config.json5")]
        shown = subprocess.run(
            [*cli, "--json", "status", "--call-id", done_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["call"]["callId"] == done_id
        # Everything lives in Redis, nothing in a SQLite file.
        client = redis_server.client()
        assert client.exists(f"{prefix}:call:{done_id}", f"{prefix}:call:{live_id}") == 2
        client.close()
        assert not (tmp_path / "calls.db").exists()
        before = server.events()
        assert [e["seq"] for e in before] == list(range(1, len(before) + 1))

        server.kill9()
        server.start()
        # The restarted server is a new cluster member: the old one's key outlives it by up to
        # its TTL (5 s), and then the adoption sweep takes its calls over.
        server.wait(lambda: any(e["type"] == "call.restored" for e in server.events()), 15)
        after = server.events()
        after_by_seq = {e["seq"]: e for e in after}
        for event in before:  # nothing acknowledged was lost or rewritten
            assert after_by_seq[event["seq"]] == event
        restored = [e for e in after if e["type"] == "call.restored"]
        assert [(e["callId"], e["data"]["outcome"]) for e in restored] == [(live_id, "kept")]
        ledger = [
            json.loads(line) for line in (tmp_path / "mock-carrier.jsonl").read_text().splitlines()
        ]
        dials = Counter(row["callId"] for row in ledger if row["op"] == "dial")
        assert dials == Counter({done_id: 1, live_id: 1})
        again = httpx.post(f"{server.url}/voice/webhook", json=hook, timeout=5)
        # the first answer, from the replay cache in Redis (it outlives the process)
        assert again.status_code == 200 and again.json()["results"] == ["applied"]
        assert [e["type"] for e in server.events()].count("call.dtmf") == 1  # applied once
        assert [c["callId"] for c in server.rpc("voicecall.status")["calls"]] == [live_id]
        assert server.rpc("voicecall.end", {"callId": live_id}) == {"success": True}
        assert server.rpc("voicecall.status")["calls"] == []
    finally:
        server.stop()


def test_serve_refuses_an_unreachable_redis(tmp_path: Path) -> None:
    port, dead = free_port(), f"redis://127.0.0.1:{free_port()}/0"
    (tmp_path / "config.json5").write_text(CONFIG % (port, dead, "x"))
    env = {**base_env(tmp_path), "VOICECALL_HOME": str(tmp_path)}
    config = str(tmp_path / "config.json5")
    done = subprocess.run(
        [sys.executable, "-m", "voice_call.cli", "--config", config, "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"cannot reach the Redis call store at {dead.removesuffix('/0')}/0: " in done.stderr
