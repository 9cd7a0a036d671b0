"""`voicecall sim <carrier>`: the printed config block places real calls, both ways.

Each test plays the README's offline recipe with real subprocesses: start the emulator, copy the
config block it printed into a config file, start `voicecall serve`, place an outbound call
with `voicecall call`, ring the server with `voicecall sim <carrier> call-in`, and watch both
calls in the emulator's own ledger (`GET /_sim/calls`).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.stack import Cli, base_env, read_lines, stop, wait_for_port, write_config
from tests.support import free_port, wait_until

CARRIERS = ("twilio", "telnyx", "plivo")
APP_NUMBER = "+15550001234"  # `call-in --to` defaults to this number, as the README's config
CALLER = "+15550001111"
MESSAGE = "Hello from the offline emulator"
GREETING = "Thanks for calling the emulator line"
REST_PROBES = {
    "twilio": "/2010-04-01/Accounts/{sid}/Calls.json",
    "telnyx": "/v2/calls",
    "plivo": "/v1/Account/{sid}/Call/",
}

Ledger = list[dict[str, Any]]


def ledger(sim_url: str) -> Ledger:
    calls: Ledger = httpx.get(f"{sim_url}/_sim/calls", timeout=5).json()["calls"]
    return calls


def wait_ledger(sim_url: str, check: Callable[[Ledger], bool], timeout: float = 60) -> Ledger:
    try:
        asyncio.run(wait_until(lambda: check(ledger(sim_url)), timeout))
    except AssertionError:
        raise AssertionError(
            f"the emulator's ledger never matched: {json.dumps(ledger(sim_url))}"
        ) from None
    return ledger(sim_url)


def start_sim(cli: Cli, carrier: str, *args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = cli.popen("sim", carrier, "--answer-delay-ms", "100", "--reply-delay-ms", "100", *args)
    lines = read_lines(proc, 1, timeout=30)
    assert lines, f"the sim printed nothing: {stop(proc)}"
    return proc, json.loads(lines[0])


@pytest.fixture
def sim_and_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Cli, dict[str, Any]]]:
    carrier = request.param
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/voice/webhook"
    cli = Cli(base_env(tmp_path), None)
    # Only the webhook URL is given (Plivo's hang-up URL is derived from it); the caller says
    # one line and hangs up once the (echo) bot has answered it.
    sim, info = start_sim(cli, carrier, "--json", "--inbound-url", webhook, "--reply", "Hi there.")
    config = {
        **info["config"],  # the printed block, as a user would paste it
        "fromNumber": APP_NUMBER,
        "serve": {"port": port},
        "publicUrl": webhook,
        "outbound": {"defaultMode": "notify", "notifyHangupDelaySec": 0},
        "inboundPolicy": "open",
        "inboundGreeting": GREETING,
        "responder": {"provider": "echo"},
    }
    cli.config = write_config(tmp_path / f"{carrier}-sim.json5", config)
    server = cli.popen("serve")
    try:
        wait_for_port(server, port, timeout=30)
        yield cli, info
    finally:
        _, err = stop(server)
        print(err[-3000:])  # the server's log, shown when a test fails
        stop(sim)
    assert sim.returncode == 0  # SIGTERM stops it cleanly, and it forgets its recorded URL
    assert not (tmp_path / "state" / "sim" / f"{carrier}.json").exists()


@pytest.mark.parametrize("sim_and_server", CARRIERS, indirect=True)
def test_printed_block_places_a_call_and_takes_one(sim_and_server: tuple[Cli, Any]) -> None:
    cli, info = sim_and_server
    carrier, sim_url = info["carrier"], info["url"]
    if carrier == "telnyx":
        assert info["config"]["telnyx"]["apiBaseUrl"] == f"{sim_url}/v2"
    if carrier == "plivo":  # the instructions name the hang-up URL a Plivo application needs
        assert info["inbound"]["hangupUrl"] == info["inbound"]["answerUrl"]

    block = info["config"][carrier]
    sid = block.get("accountSid") or block.get("authId") or ""
    # no credentials: the emulator answers as the carrier does, 401
    probe = httpx.post(sim_url + REST_PROBES[carrier].format(sid=sid), data={}, timeout=5)
    assert probe.status_code == 401

    placed = cli.json("call", "--to", "+15550005678", "--message", MESSAGE)
    assert placed["callId"]
    calls = wait_ledger(
        sim_url, lambda calls: any(c["direction"] == "outbound" and c["ended"] for c in calls)
    )
    outbound = next(c for c in calls if c["direction"] == "outbound")
    assert outbound["to"].endswith("15550005678") and MESSAGE in " ".join(outbound["heard"])

    rang = cli.json("sim", carrier, "call-in", "--from", CALLER)
    assert (rang["from"], rang["to"], rang["direction"]) == (CALLER, APP_NUMBER, "inbound")
    calls = wait_ledger(
        sim_url, lambda calls: any(c["id"] == rang["id"] and c["ended"] for c in calls)
    )
    inbound = next(c for c in calls if c["id"] == rang["id"])
    assert inbound["heard"][0] == GREETING and inbound["said"] == ["Hi there."], inbound
    # the carrier told our server the call ended (Plivo: through the derived hang-up URL)
    asyncio.run(wait_until(lambda: cli.json("status")["calls"] == [], 60, what="no live calls"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("call-in",), "add --from"),
        (("call-in", "--from", "+15550001111", "--port", "4010"), "--port sets up the emulator"),
        (("--from", "+15550001111"), "--from is for call-in"),
        (("--hangup-url", "http://127.0.0.1:1/h"), "Plivo only"),
        (("--inbound-url", "127.0.0.1:3399/voice/webhook"), "must be an http(s) URL"),
        (("call-in", "--from", "12", "--sim-url", "http://127.0.0.1:9"), "could not reach"),
        (("call-in", "--from", "+15550001111"), "no running `voicecall sim twilio`"),
    ],
)
def test_sim_refuses_misplaced_options(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    done = Cli(base_env(tmp_path), None).run("sim", "twilio", *args)
    assert done.returncode in (1, 2) and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
