"""Run fuzz/property suites in a child pytest and sample its resident memory (VmRSS).

The suites drive the real app in the child's process (ASGI in-process, or a live server on a
loopback port for the media route), so the child's RSS bounds the server's. Printed: RSS once
the first property started (after imports and warm-up), the peak, and at the end.

    VC_FUZZ_EXAMPLES=5000 .venv/bin/python tests/fuzz_rss.py tests/test_fuzz_webhooks.py ...

Linux only (/proc). Not a test: timings and memory vary with the machine (docs/fuzzing.md).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

WARM_UP_S = 15.0


def rss_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((ln for ln in status.splitlines() if ln.startswith("VmRSS:")), None)
    return int(line.split()[1]) if line else None


def main(args: list[str]) -> int:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        *args,
    ]
    started = time.monotonic()
    child = subprocess.Popen(command)
    samples: list[tuple[float, int]] = []
    while child.poll() is None:
        kib = rss_kib(child.pid)
        if kib is not None:
            samples.append((time.monotonic() - started, kib))
        time.sleep(0.5)
    warm = next((kib for at, kib in samples if at >= WARM_UP_S), samples[-1][1] if samples else 0)
    peak = max((kib for _, kib in samples), default=0)
    last = samples[-1][1] if samples else 0
    print(
        f"RSS MiB: after {WARM_UP_S:.0f} s {warm / 1024:.0f}, peak {peak / 1024:.0f}, "
        f"at the end {last / 1024:.0f}; {time.monotonic() - started:.0f} s; exit {child.returncode}"
    )
    return child.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
