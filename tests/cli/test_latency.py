"""`voicecall latency`: percentiles per component read from the store, no server needed."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from voice_call.cli.latency import latest_turns, percentile, summarize
from voice_call.cli.main import cli
from voice_call.models import CallRecord, Direction, Mode, TurnKind, TurnLatency
from voice_call.store.sqlite import SqliteStore


def reply(turn: int, at: float, v2v: float, first_token: float) -> TurnLatency:
    return TurnLatency(
        turn=turn,
        kind=TurnKind.REPLY,
        at=at,
        total_ms=v2v + 50,
        voice_to_voice_ms=v2v,
        responder_first_token_ms=first_token,
        responder_total_ms=first_token + 100,
        outcome="spoken",
    )


def record(call_id: str, started: float, turns: list[TurnLatency]) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        provider="mock",
        direction=Direction.OUTBOUND,
        mode=Mode.CONVERSATION,
        from_number="+15550000000",
        to_number="+15555550123",
        started_at=started,
        latency=turns,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "state"


async def fill(home: Path) -> None:
    store = SqliteStore(home / "calls.db")
    await store.open()
    # 100 replies over two calls: voice-to-voice 1..100 ms; plus one continue turn
    first = [reply(i, 1000 + i, float(i), 10.0 * i) for i in range(1, 51)]
    second = [reply(i, 2000 + i, float(50 + i), 10.0 * (50 + i)) for i in range(1, 51)]
    second.append(TurnLatency(turn=51, at=3000, total_ms=900, speak_ms=20, listen_wait_ms=800))
    await store.save(record("a", 1000, first))
    await store.save(record("b", 2000, second))
    await store.save(record("notify", 2500, []))
    await store.close()


def run(home: Path, *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    env = {"VOICECALL_HOME": str(home), "VOICECALL_CONFIG": ""}
    result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_json_percentiles_per_component(home: Path) -> None:
    asyncio.run(fill(home))
    code, out, _ = run(home, "latency", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["callsScanned"] == 3 and data["turns"] == 101 and data["replies"] == 100
    v2v = data["components"]["voiceToVoiceMs"]
    assert v2v["count"] == 100 and v2v["min"] == 1 and v2v["max"] == 100
    assert v2v["p50"] == pytest.approx(50.5) and v2v["p95"] == pytest.approx(95.05)
    assert v2v["p99"] == pytest.approx(99.01)
    assert data["components"]["listenWaitMs"]["count"] == 1
    assert data["components"]["totalMs"]["count"] == 101
    assert "endpointingMs" not in data["components"]


def test_last_n_turns_and_the_text_table(home: Path) -> None:
    asyncio.run(fill(home))
    code, out, _ = run(home, "--json", "latency", "--last", "10")
    data = json.loads(out)
    assert code == 0 and data["turns"] == 10
    # the 10 newest: replies 92..100 of the second call (v2v 92..100) and the continue turn
    assert data["components"]["voiceToVoiceMs"]["min"] == 92
    code, out, _ = run(home, "latency")
    assert code == 0
    assert out.splitlines()[0] == "101 turn(s) from 3 call(s), milliseconds:"
    row = next(line for line in out.splitlines() if line.startswith("voice-to-voice"))
    assert row.split()[-4:] == ["50.5", "95.0", "99.0", "100.0"]


def test_no_store_yet(home: Path) -> None:
    code, out, err = run(home, "latency")
    assert code == 0 and "No call store" in err and "No turn latency recorded yet." in out
    assert run(home, "latency", "--last", "0")[0] == 2  # usage error


def test_latest_turns_orders_by_time() -> None:
    a = record("a", 10, [reply(1, 30, 1, 1), reply(2, 50, 2, 2)])
    b = record("b", 20, [reply(1, 40, 3, 3)])
    assert [t.voice_to_voice_ms for t in latest_turns([a, b], 2)] == [3, 2]
    assert latest_turns([a, b], 0) == []


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200), st.floats(0, 100))
def test_percentile_matches_numpy(values: list[float], q: float) -> None:
    ordered = sorted(values)
    got = percentile(ordered, q)
    assert math.isclose(got, float(np.percentile(ordered, q)), rel_tol=1e-9, abs_tol=1e-6)
    assert ordered[0] <= got <= ordered[-1] or math.isclose(got, ordered[0])


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    assert summarize([]) == {}
