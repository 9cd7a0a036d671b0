"""Starting and stopping the server (src/voice_call/server/serve.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from pathlib import Path

import httpx
import pytest

from tests.server.stack import server_config
from voice_call.runtime import Runtime
from voice_call.server.serve import PortInUse, serve, start_background


async def test_port_zero_announces_the_actual_port_and_cleans_up(vc_home: Path) -> None:
    runtime = Runtime(server_config(), vc_home)
    server = await start_background(runtime)
    assert server.port != 0 and server.url == f"http://127.0.0.1:{server.port}"
    info = json.loads((vc_home / "server.json").read_text())
    assert info == {"url": server.url, "pid": os.getpid()}
    assert runtime.manager.webhook_url == f"http://127.0.0.1:{server.port}/voice/webhook"
    async with httpx.AsyncClient() as http:
        assert (await http.get(server.url + "/healthz")).status_code == 200
    await server.stop()
    assert not (vc_home / "server.json").exists()
    assert not runtime.running
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(server.url + "/healthz")


async def test_busy_port_raises_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runtime = Runtime(server_config(serve={"port": port}), tmp_path / "home")
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use"):
            await serve(runtime)
        with pytest.raises(PortInUse, match="voicecall serve"):
            await start_background(runtime)
        assert not runtime.running  # checked before anything was started
        assert not (tmp_path / "home" / "server.json").exists()


async def test_second_server_on_the_same_port_is_refused(vc_home: Path, tmp_path: Path) -> None:
    first = await start_background(Runtime(server_config(), vc_home))
    try:
        other = Runtime(server_config(serve={"port": first.port}), tmp_path / "other")
        with pytest.raises(PortInUse):
            await start_background(other)
        async with httpx.AsyncClient() as http:  # the first one is unharmed
            assert (await http.get(first.url + "/healthz")).status_code == 200
    finally:
        await first.stop()


async def test_starting_the_runtime_twice_in_process_is_harmless(vc_home: Path) -> None:
    runtime = Runtime(server_config(), vc_home)
    await runtime.start()
    await runtime.start()
    server = await start_background(runtime)  # starts it again (lifespan): still one runtime
    try:
        await asyncio.gather(runtime.start(), runtime.start())
        async with httpx.AsyncClient() as http:
            health = await http.get(server.url + "/healthz")
            assert health.json()["ok"] is True
    finally:
        await server.stop()
        await runtime.stop()


async def test_serve_until_sigterm(vc_home: Path) -> None:
    runtime = Runtime(server_config(), vc_home)
    urls: list[str] = []
    listening = asyncio.Event()

    def ready(url: str) -> None:
        urls.append(url)
        listening.set()

    previous = signal.getsignal(signal.SIGTERM)
    task = asyncio.create_task(serve(runtime, ready=ready))
    async with asyncio.timeout(5):
        await listening.wait()
    assert json.loads((vc_home / "server.json").read_text())["url"] == urls[0]
    async with httpx.AsyncClient() as http:
        assert (await http.get(urls[0] + "/healthz")).status_code == 200
    # uvicorn's handler: a graceful stop, not an exception (SIGTERM: what process managers send)
    os.kill(os.getpid(), signal.SIGTERM)
    async with asyncio.timeout(5):
        await task
    assert not (vc_home / "server.json").exists()
    assert not runtime.running
    assert signal.getsignal(signal.SIGTERM) is previous


async def test_a_runtime_that_cannot_start_releases_the_port(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")  # the state folder cannot be created
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runtime = Runtime(server_config(serve={"port": port}), home)
    with pytest.raises(OSError):
        await start_background(runtime)
    with socket.socket() as again:  # free again
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def test_a_started_server_puts_the_loaded_heap_out_of_the_collectors_sight(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    script = """
import asyncio, gc, sys
from pathlib import Path
from tests.server.stack import server_config
from voice_call.runtime import Runtime
from voice_call.server.serve import start_background

async def main() -> None:
    before = gc.get_freeze_count()
    server = await start_background(Runtime(server_config(), Path(sys.argv[1])))
    frozen = gc.get_freeze_count()
    second = await start_background(Runtime(server_config(), Path(sys.argv[1]) / "b"))
    print(before, frozen, gc.get_freeze_count() <= frozen)
    await second.stop()
    await server.stop()

asyncio.run(main())
"""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    before, frozen, once = int(out[0]), int(out[1]), out[2]
    assert before == 0 and frozen > 10_000  # the libraries' objects, frozen at start
    assert once == "True"  # once a process: a second server freezes nothing more
