"""Who ran a benchmark, where and when: the line recorded next to every figure."""

from __future__ import annotations

import datetime as dt
import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe() -> str:
    return (
        f"{dt.date.today().isoformat()}, {cpu_model()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def steal_s() -> float:
    """CPU time the hypervisor took from this VM so far, all cores ("steal", /proc/stat): a
    level during which it grew was disturbed from outside, whatever it measured."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
    except OSError:
        return 0.0
    if fields[0] != "cpu" or len(fields) < 9:
        return 0.0
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")
