"""`python -m bench workers --smoke`: `voicecall serve --workers 1` on a real redis-server takes
signed callbacks on its one port, and after kill -9 every one answered 2xx is in the store."""

from __future__ import annotations

from tests.test_bench_smoke import smoke


def table(out: str) -> list[dict[str, str]]:
    lines = [line for line in out.splitlines() if line.startswith("|")]
    names = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(names, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


def test_workers_smoke() -> None:
    rows = table(smoke("workers"))
    assert [(row["workers"], row["offered /s"]) for row in rows] == [("1", "100"), ("1", "max")]
    for row in rows:
        assert row["non-2xx"] == "0" and int(row["2xx /s"]) > 0, row
        # every connection went to the one worker, which answered every request
        assert row["connections per worker"] == "8", row
        assert row["requests per worker"] == row["sent"], row
        assert int(row["workers CPU µs/webhook"]) > 0, row
        assert row["supervisor CPU µs/webhook"] == "-", row  # one worker: no supervisor
    stored, acknowledged = rows[0]["2xx'd in store after kill -9"].split("/")
    # our warm-up and both levels (40 + 50 + 200), and the emulator's own callbacks
    assert int(stored) == int(acknowledged) > 290, rows
