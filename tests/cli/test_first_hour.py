"""A new user's first hour: what `voicecall` says when something expected goes wrong.

A switched-off service (`enabled: false`) refuses clearly; a tunnel, a bind address or a port
that cannot be had is one sentence with the fix, never a traceback; `--config` works after the
command; `serve --port/--bind`; the banner names the URL carriers call and the store file;
`smoke` never leaves its call running and prints JSON whatever happens; a carrier event that
came after the end is logged as `call.ignored`, not as a second `call.ended`.

Run as real subprocesses (tests/cli/stack.py) where start-up, logging and exit codes matter,
and through click's CliRunner against an in-process server where a live call is needed. No test
reaches the network: the ngrok SDK is replaced by a fake module on PYTHONPATH where a tunnel
must "open" or "fail offline".
"""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.cli.stack import Cli, base_env, read_lines, stop, wait_for_port, write_config
from tests.support import free_port, wait_until
from voice_call.cli.main import cli
from voice_call.cli.output import event_line
from voice_call.client.rpc import RpcClient
from voice_call.config import parse_config
from voice_call.models import CallEvent, CallState, EventType
from voice_call.runtime import Runtime
from voice_call.server.serve import RunningServer, start_background

TWILIO: dict[str, Any] = {
    "provider": "twilio",
    "fromNumber": "+15550001111",
    "twilio": {"accountSid": "AC" + "0" * 32, "authToken": "secret"},
    "serve": {"port": 0},
}


def one_error_line(stderr: str) -> str:
    """stderr is exactly one `Error: …` line: no traceback, no log noise."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


# --- enabled: false -----------------------------------------------------------------------------

SERVICE_COMMANDS = [  # serve: in a subprocess below (before the guard it would serve forever)
    ("call", "-m", "hi"),
    ("continue", "--call-id", "c1", "-m", "hi"),
    ("speak", "--call-id", "c1", "-m", "hi"),
    ("dtmf", "--call-id", "c1", "--digits", "1"),
    ("end", "--call-id", "c1"),
    ("status",),
    ("tail",),
    ("mcp",),
    ("smoke", "--to", "+15550001234", "--yes"),
]


def invoke(config: Path, home: Path, *args: str) -> Result:
    env = {"VOICECALL_HOME": str(home), "VOICECALL_CONFIG": str(config)}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize("args", SERVICE_COMMANDS, ids=lambda args: args[0])
def test_a_disabled_service_is_refused_by_every_command_that_needs_it(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    config = write_config(tmp_path / "off.json5", {"enabled": False, "serve": {"port": 0}})
    result = invoke(config, tmp_path / "home", *args)
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: the voice-call service is switched off (enabled is false in {config}) — set it "
        f"to true to use `voicecall {args[0]}`\n"
    )
    assert not (tmp_path / "home" / "server.json").exists()
    assert not (tmp_path / "home" / "mock-carrier.jsonl").exists()  # nothing was dialled


def test_expose_off_still_removes_routes_while_switched_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no `tailscale`: it gets that far
    config = write_config(tmp_path / "off.json5", {"enabled": False})
    on = invoke(config, tmp_path / "home", "expose", "--mode", "funnel", "--port", "3334")
    assert on.exit_code == 1 and "switched off" in on.output
    off = invoke(config, tmp_path / "home", "expose", "--mode", "off")
    assert off.exit_code == 1 and "switched off" not in off.output
    assert "the `tailscale` command is not installed" in off.output


@pytest.mark.parametrize("openclaw", [False, True], ids=["top-level", "openclaw-entry"])
def test_serve_refuses_a_disabled_service_naming_the_switch(tmp_path: Path, openclaw: bool) -> None:
    ours: dict[str, Any] = {"provider": "mock", "serve": {"port": 0}}
    if openclaw:
        entry = {"enabled": False, "config": ours}
        raw: dict[str, Any] = {"plugins": {"entries": {"voice-call": entry}}}
        switch = 'plugins.entries["voice-call"].enabled'
    else:
        raw, switch = {**ours, "enabled": False}, "enabled"
    config = write_config(tmp_path / "c.json", raw)
    done = Cli(base_env(tmp_path), config).run("serve", timeout=20)
    assert done.returncode == 1 and done.stdout == ""
    assert one_error_line(done.stderr) == (
        f"Error: the voice-call service is switched off ({switch} is false in {config}) — set "
        "it to true to use `voicecall serve`"
    )


def test_config_check_says_the_service_is_disabled_and_passes(tmp_path: Path) -> None:
    config = write_config(tmp_path / "off.json5", {"enabled": False})
    text = invoke(config, tmp_path / "home", "config", "check")
    assert text.exit_code == 0, text.output
    assert text.output.splitlines()[-1] == (
        f"The service is disabled (enabled is false in {config}): `voicecall serve` and the call "
        "commands refuse until it is true."
    )
    body = json.loads(invoke(config, tmp_path / "home", "config", "check", "--json").output)
    assert body["ok"] is True and body["enabled"] is False


def test_smoke_json_reports_a_disabled_service_as_json(tmp_path: Path) -> None:
    config = write_config(tmp_path / "off.json5", {"enabled": False})
    result = invoke(config, tmp_path / "home", "smoke", "--json", "--to", "+15550001234", "--yes")
    assert result.exit_code == 1
    body = json.loads(result.output)
    assert body["ok"] is False and body["liveCall"] is False
    assert "switched off (enabled is false" in body["error"]


# --- expected failures are one sentence --------------------------------------------------------


def test_ngrok_without_a_token_is_one_sentence(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", {**TWILIO, "tunnel": {"provider": "ngrok"}})
    done = Cli(base_env(tmp_path), config).run("serve", timeout=30)
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert "the ngrok tunnel needs an authtoken" in line and "NGROK_AUTHTOKEN" in line


FAKE_NGROK = '''
"""A stand-in for the ngrok SDK (no network): what `tunnel/ngrok.py` calls of it."""
import os


class _Listener:
    def url(self):
        return os.environ["FAKE_NGROK_URL"]

    async def close(self):
        pass


class _Endpoint:
    def domain(self, name):
        return self

    async def listen_and_forward(self, to):
        return _Listener()


class _Session:
    def http_endpoint(self):
        return _Endpoint()

    async def close(self):
        pass


class SessionBuilder:
    def authtoken(self, token):
        return self

    async def connect(self):
        if not os.environ.get("FAKE_NGROK_URL"):  # as the SDK says it when offline
            raise ValueError("failed to connect session", "failed to establish tcp connection")
        return _Session()
'''


def fake_ngrok_env(tmp_path: Path, url: str | None) -> dict[str, str]:
    package = tmp_path / "fake-sdk" / "ngrok"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(FAKE_NGROK), encoding="utf-8")
    env = base_env(tmp_path)
    env["PYTHONPATH"] = str(package.parent)
    env["NGROK_AUTHTOKEN"] = "fake-token"
    if url:
        env["FAKE_NGROK_URL"] = url
    return env


def test_ngrok_offline_is_one_sentence(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", {**TWILIO, "tunnel": {"provider": "ngrok"}})
    done = Cli(fake_ngrok_env(tmp_path, None), config).run("serve", timeout=30)
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert "ngrok could not open a tunnel: failed to connect session" in line
    assert "the network connection" in line


def test_tailscale_missing_is_one_sentence(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    env["PATH"] = str(tmp_path / "empty-bin")  # no `tailscale` anywhere
    raw = {**TWILIO, "tunnel": {"provider": "tailscale-funnel"}}
    cli_ = Cli(env, write_config(tmp_path / "c.json", raw))
    for args in (("serve",), ("expose", "--port", "3334")):
        done = cli_.run(*args, timeout=30)
        assert done.returncode == 1, args
        line = one_error_line(done.stderr)
        assert "the `tailscale` command is not installed or not on PATH" in line, args


def test_missing_carrier_credentials_are_a_config_error(tmp_path: Path) -> None:
    raw = {"provider": "twilio", "fromNumber": "+15550001111", "serve": {"port": 0}}
    done = Cli(base_env(tmp_path), write_config(tmp_path / "c.json", raw)).run("serve")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "twilio.accountSid: required" in done.stderr and "TWILIO_ACCOUNT_SID" in done.stderr


def test_a_busy_port_names_the_option_that_chose_it(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path / "c.json", {"serve": {"port": 0}})
        done = Cli(base_env(tmp_path), config).run("serve", "--port", str(port))
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert f"port {port} on 127.0.0.1 is already in use" in line and "set --port" in line


@pytest.mark.parametrize("where", ["config", "option"])
def test_an_address_not_on_this_machine_is_one_sentence(tmp_path: Path, where: str) -> None:
    address = "192.0.2.1"  # TEST-NET-1: never this machine's
    raw: dict[str, Any] = {"serve": {"port": 0}}
    args = ["serve"]
    if where == "config":
        raw["serve"]["bind"] = address
    else:
        args += ["--bind", address]
    done = Cli(base_env(tmp_path), write_config(tmp_path / "c.json", raw)).run(*args)
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert f"cannot listen on '{address}' port 0" in line and "an address of this machine" in line


def test_no_server_on_port_0_does_not_say_port_0(tmp_path: Path) -> None:
    cli_ = Cli(base_env(tmp_path), write_config(tmp_path / "c.json", {"serve": {"port": 0}}))
    done = cli_.run("call", "-m", "hi")
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert ":0" not in line and "server.json" in line and "start one with `voicecall serve`" in line


def test_urls_built_from_an_ipv6_bind_are_bracketed(tmp_path: Path) -> None:
    runtime = Runtime(parse_config({"serve": {"bind": "::1", "port": 3334}}, env={}), tmp_path)
    assert runtime.local_webhook_url() == "http://[::1]:3334/voice/webhook"
    assert runtime.webhook_url() == "http://[::1]:3334/voice/webhook"


# --- --config after the command -----------------------------------------------------------------


def test_config_is_accepted_after_any_command(tmp_path: Path) -> None:
    good = write_config(tmp_path / "good.json", {"provider": "mock", "serve": {"port": 0}})
    env = base_env(tmp_path)
    env["VOICECALL_CONFIG"] = str(tmp_path / "missing.json")  # what --config must override
    cli_ = Cli(env, None)
    check = cli_.run("config", "check", "--config", str(good), "--json")
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["path"] == str(good)
    group = cli_.run("config", "--config", str(good), "check")
    assert group.returncode == 0 and f"Config OK ({good})" in group.stdout
    status = cli_.run("status", "--config", str(good), "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {"found": True, "calls": []}
    before = cli_.run("--config", str(good), "setup", "--json")
    assert before.returncode == 0 and json.loads(before.stdout)["ok"] is True
    after = cli_.run("setup", "--json", "--config", str(good))
    assert after.returncode == 0 and json.loads(after.stdout) == json.loads(before.stdout)


# --- serve: --port/--bind and the banner ----------------------------------------------------


def test_serve_port_and_bind_override_the_config(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "c.json", {"serve": {"port": 1, "bind": "192.0.2.1"}})
    proc = Cli(base_env(tmp_path), config).popen(
        "serve", "--port", str(port), "--bind", "127.0.0.1"
    )
    try:
        wait_for_port(proc, port)
        banner = read_lines(proc, 6, timeout=10)
    finally:
        stop(proc)
    assert banner[0].rstrip().endswith(f"(mock provider) on http://127.0.0.1:{port}")
    assert banner[1].split()[:2] == ["webhook:", f"http://127.0.0.1:{port}/voice/webhook"]


def test_banner_names_the_tunnel_url_and_the_store_file_and_warns_on_skipped_signatures(
    tmp_path: Path,
) -> None:
    store = tmp_path / "data" / "voice.sqlite"
    raw = {
        **TWILIO,
        "tunnel": {"provider": "ngrok"},
        "store": {"path": str(store)},
        "skipSignatureVerification": True,
    }
    env = fake_ngrok_env(tmp_path, "https://fake-tunnel.ngrok.app")
    port = free_port()
    proc = Cli(env, write_config(tmp_path / "c.json", raw)).popen("serve", "--port", str(port))
    try:
        wait_for_port(proc, port)
        banner = read_lines(proc, 6, timeout=10)
    finally:
        _, err = stop(proc)
    webhook = "https://fake-tunnel.ngrok.app/voice/webhook"
    assert banner[1].split() == [
        "webhook:",
        webhook,
        "(carriers",
        "call",
        "this;",
        "through",
        "ngrok)",
    ]
    assert banner[4].split() == ["call", "store:", str(store)]
    assert store.exists()  # the file the banner names is the one opened
    warning = "WARNING: skipSignatureVerification is on: webhooks are accepted without the"
    assert any(line.startswith(warning) for line in err.splitlines()), err
    assert "Traceback" not in err


def test_banner_names_public_url(tmp_path: Path) -> None:
    raw = {"publicUrl": "https://calls.example.com/p/voice/webhook", "serve": {"port": 0}}
    port = free_port()
    proc = Cli(base_env(tmp_path), write_config(tmp_path / "c.json", raw)).popen(
        "serve", "--port", str(port)
    )
    try:
        wait_for_port(proc, port)
        banner = read_lines(proc, 6, timeout=10)
    finally:
        _, err = stop(proc)
    assert banner[1].split()[:2] == ["webhook:", "https://calls.example.com/p/voice/webhook"]
    assert "(carriers call this; publicUrl)" in banner[1]
    assert banner[4].split() == ["call", "store:", str(tmp_path / "state" / "calls.db")]
    assert "WARNING" not in err


# --- smoke against a live server -----------------------------------------------------------------


@pytest.fixture
async def mock_runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    """A running mock-provider server whose config file is tmp_path/config.json."""
    raw = {
        "provider": "mock",
        "serve": {"port": 0},
        "outbound": {"notifyHangupDelaySec": 0},
        "mock": {"answerDelayMs": 20, "replyDelayMs": 20},
    }
    write_config(tmp_path / "config.json", raw)
    runtime = Runtime(parse_config(raw, env={}), tmp_path / "home")
    server = await start_background(runtime)
    yield runtime
    await server.stop()


def smoke(tmp_path: Path, *args: str) -> Result:
    return invoke(tmp_path / "config.json", tmp_path / "home", "smoke", *args)


async def test_smoke_conversation_ends_the_call_it_placed(
    tmp_path: Path, mock_runtime: Runtime
) -> None:
    args = ("--to", "+15550001234", "--yes", "--mode", "conversation", "--json", "--wait", "10")
    result = await asyncio.to_thread(smoke, tmp_path, *args)
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.output)["outcome"]
    assert outcome["ended"] and outcome["answered"] and not outcome["timedOut"]
    assert outcome["state"] == CallState.HANGUP_BOT
    assert await mock_runtime.store.list_active() == []


async def test_smoke_hangs_up_a_call_that_outlasts_wait(tmp_path: Path) -> None:
    raw = {"provider": "mock", "serve": {"port": 0}, "mock": {"answerDelayMs": 600_000}}
    write_config(tmp_path / "config.json", raw)
    runtime = Runtime(parse_config(raw, env={}), tmp_path / "home")
    server: RunningServer = await start_background(runtime)
    try:
        args = ("--to", "+15550001234", "--yes", "--json", "--wait", "1")
        result = await asyncio.to_thread(smoke, tmp_path, *args)
        assert await runtime.store.list_active() == []
    finally:
        await server.stop()
    assert result.exit_code == 1
    outcome = json.loads(result.output)["outcome"]
    assert outcome["timedOut"] and outcome["ended"] and not outcome["answered"]


def test_smoke_json_is_json_on_every_failure(tmp_path: Path) -> None:
    write_config(tmp_path / "config.json", {"provider": "mock", "serve": {"port": 0}})
    no_server = smoke(tmp_path, "--json", "--to", "+15550001234", "--yes")
    assert no_server.exit_code == 1
    body = json.loads(no_server.output)
    assert body["ok"] is False and body["liveCall"] is False
    assert "no voice-call server is running" in body["error"]
    assert {c["status"] for c in body["setup"]["checks"]} == {"ok"}
    bad_number = smoke(tmp_path, "--to", "555-1234", "--yes", "--json")
    assert bad_number.exit_code == 2
    assert "is not an E.164 number" in json.loads(bad_number.output)["error"]
    text = smoke(tmp_path, "--to", "555-1234")
    assert text.exit_code == 2 and text.output.startswith("Error: --to '555-1234' is not")


# --- a carrier event after the end ---------------------------------------------------------------


async def test_a_carrier_event_after_the_end_is_logged_as_ignored(
    tmp_path: Path, mock_runtime: Runtime
) -> None:
    runtime = mock_runtime
    client = RpcClient.from_home(runtime.config, runtime.home)
    started = await client.call("voicecall.initiate", {"to": "+15550001234", "message": "hi"})
    call_id = started["callId"]
    await client.call("voicecall.end", {"callId": call_id})
    late = CallEvent(type=EventType.ENDED, call_id=call_id, reason=CallState.HANGUP_USER)
    assert await runtime.manager.handle_event(late) == "ignored: call already ended"

    seen: list[dict[str, Any]] = []

    async def follow() -> None:
        async for event in client.events(since=0, call_id=call_id):  # what `tail` reads
            seen.append(event)

    task = asyncio.create_task(follow())
    try:
        await wait_until(lambda: any(e["type"] == "call.ignored" for e in seen))
    finally:
        task.cancel()
    types = [event["type"] for event in seen]
    assert types.count("call.ended") == 1 and types[-1] == "call.ignored"
    ignored = seen[-1]
    assert ignored["data"]["event"] == "call.ended"
    assert ignored["data"]["outcome"] == "ignored: call already ended"
    assert "call.ended ignored: call already ended" in event_line(ignored).plain


# --- the seed's ngrok free-tier signature bypass ---------------------------------------------


def test_config_check_refuses_the_ngrok_signature_bypass(tmp_path: Path) -> None:
    raw = {"tunnel": {"provider": "ngrok", "allowNgrokFreeTierLoopbackBypass": True}}
    result = invoke(write_config(tmp_path / "c.json", raw), tmp_path / "home", "config", "check")
    assert result.exit_code == 2
    assert "tunnel.allowNgrokFreeTierLoopbackBypass: not supported: it would accept forged" in (
        result.output
    )
    assert 'trustedProxyIPs: ["127.0.0.1"]' in result.output
