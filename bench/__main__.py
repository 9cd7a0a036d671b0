"""Run a benchmark, print its table, and with --record append it to bench/README.md."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from bench import (
    chaos,
    cluster,
    exposure,
    load,
    machine,
    mutants,
    realtime,
    startup,
    stream_turns,
    streams,
    streams_workers,
    turn_latency,
    vs_pipecat,
    webhooks,
    workers,
)

BENCHMARKS = {
    "startup": startup.run,
    "exposure": exposure.run,
    "turn_latency": turn_latency.run,
    "stream_turns": stream_turns.run,
    "streams": streams.run,
    "streams_workers": streams_workers.run,
    "vs_pipecat": vs_pipecat.run,
    "realtime": realtime.run,
    "realtime_load": realtime.run_load,
    "webhooks": webhooks.run,
    "cluster": cluster.run,
    "workers": workers.run,
    "load": load.run,
    "chaos": chaos.run,
    "mutants": mutants.run,
}
README = Path(__file__).with_name("README.md")


def table(rows: list[dict[str, Any]]) -> str:
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(row[h]) for h in headers) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument("--smoke", action="store_true", help="a few iterations, for CI")
    parser.add_argument("--record", action="store_true", help="append the result to README.md")
    parser.add_argument(
        "--module", choices=mutants.CHOICES, default="all", help="mutants: what to mutate"
    )
    args = parser.parse_args()
    if args.name == "mutants":
        rows = mutants.run(args.smoke, args.module)
    else:
        rows = BENCHMARKS[args.name](args.smoke)
    text = table(rows)
    print(text)
    if args.record:
        command = "python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        with README.open("a", encoding="utf-8") as fh:
            fh.write(f"\n### {args.name} — {machine.describe()}\n\n`{command}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
