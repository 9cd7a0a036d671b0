"""`exposure`: what the setup checks and the Tailscale tunnel cost.

- `voicecall setup --json` end to end (a fresh interpreter each run) against a running mock
  server, so the webhook-reachable check makes its real HTTP request to the server's URL;
- the same six checks in-process (`run_checks`), without interpreter start-up;
- a Tailscale funnel start (status + 2 mounts) and stop (2 unmounts) against a fake
  `tailscale` written in sh, so the figure is our command handling plus process start-up;
- classifying one webhook URL (`local_only_kind`), done once per start and per setup.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FAKE_TAILSCALE = """#!/bin/sh
if [ "$1" = status ]; then
  echo '{"BackendState":"Running","Self":{"DNSName":"bench.tail0.ts.net.","ID":"n1"}}'
fi
exit 0
"""
CONFIG = {
    "provider": "mock",
    "serve": {"port": 0},
    "outbound": {"notifyHangupDelaySec": 0},
}


def _row(what: str, samples: list[float], unit: str = "ms") -> dict[str, Any]:
    digits = 2 if unit == "µs" else 1
    return {
        "what": what,
        "runs": len(samples),
        "median": round(statistics.median(samples), digits),
        "max": round(max(samples), digits),
        "unit": unit,
    }


def _wait_for_server(home: Path, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not (home / "server.json").exists() or not (home / "exposure.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the benchmark server did not start")
        time.sleep(0.05)


def _setup_cli(root: Path, runs: int) -> tuple[list[float], list[float]]:
    home = root / "home"
    config = root / "config.json"
    config.write_text(json.dumps(CONFIG))
    env = {**os.environ, "VOICECALL_HOME": str(home), "VOICECALL_CONFIG": str(config)}
    cli = [sys.executable, "-m", "voice_call.cli"]
    server = subprocess.Popen([*cli, "serve"], env=env, stdout=subprocess.DEVNULL)
    try:
        _wait_for_server(home, server)
        end_to_end = []
        for _ in range(runs):
            started = time.perf_counter()
            done = subprocess.run([*cli, "setup", "--json"], env=env, capture_output=True)
            end_to_end.append((time.perf_counter() - started) * 1000)
            if done.returncode != 0 or '"ok": true' not in done.stdout.decode():
                raise RuntimeError(f"setup failed: {done.stdout.decode()}")
        in_process = asyncio.run(_run_checks(config, home, runs))
    finally:
        server.terminate()
        server.wait(15)
    return end_to_end, in_process


async def _run_checks(config: Path, home: Path, runs: int) -> list[float]:
    from voice_call.cli.setup_checks import run_checks

    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        report = await run_checks(config, home, env={})
        samples.append((time.perf_counter() - started) * 1000)
        assert report.ok, report.wire()
    return samples


async def _tailscale(root: Path, runs: int) -> tuple[list[float], list[float]]:
    from voice_call.tunnel.tailscale import Route, TailscaleCli, TailscaleTunnel

    exe = root / "tailscale"
    exe.write_text(FAKE_TAILSCALE)
    exe.chmod(0o755)
    routes = [Route("/voice/webhook", "/voice/webhook"), Route("/voice/stream", "/voice/stream")]
    starts, stops = [], []
    for _ in range(runs):
        tunnel = TailscaleTunnel("funnel", 443, routes, TailscaleCli(str(exe)))
        started = time.perf_counter()
        await tunnel.start("http://127.0.0.1:3334")
        starts.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await tunnel.stop()
        stops.append((time.perf_counter() - started) * 1000)
    return starts, stops


def _classify(runs: int) -> list[float]:
    from voice_call.security.exposure import local_only_kind

    urls = ["https://calls.example.com/voice/webhook", "http://127.0.0.1:3334/voice/webhook"]
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(1000):
            for url in urls:
                local_only_kind(url)
        samples.append((time.perf_counter() - started) * 1e6 / 2000)
    return samples


def run(smoke: bool) -> list[dict[str, Any]]:
    runs = 3 if smoke else 20
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        end_to_end, in_process = _setup_cli(root, runs)
        starts, stops = asyncio.run(_tailscale(root, runs))
    return [
        _row("voicecall setup --json (server running, HTTP self-probe)", end_to_end),
        _row("setup checks in-process (run_checks)", in_process),
        _row("tailscale funnel start: status + 2 mounts (fake sh CLI)", starts),
        _row("tailscale funnel stop: 2 unmounts (fake sh CLI)", stops),
        _row("local_only_kind(url), per call", _classify(5 if smoke else 50), "µs"),
    ]
