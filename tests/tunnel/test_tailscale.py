"""Tailscale serve/funnel through a fake `tailscale` executable on PATH.

The fake records every argument list it is run with and answers from a behaviour file:
canned `status --json`, routes to refuse, commands to hang on. Tests check the exact commands
(mount, unmount, rollback), the funnel port rule, deadlines, the Runtime opening the routes
once its server is bound, and `voicecall expose`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from voice_call.config import parse_config
from voice_call.runtime import Runtime
from voice_call.server.serve import start_background
from voice_call.tunnel import TunnelError
from voice_call.tunnel.record import read_exposure
from voice_call.tunnel.resolve import build_tunnel
from voice_call.tunnel.tailscale import (
    COMMAND_TIMEOUT_S,
    Route,
    TailscaleCli,
    TailscaleError,
    TailscaleTunnel,
    parse_self,
)

DNS = "node.tail1234.ts.net"
STATUS = {"BackendState": "Running", "Self": {"DNSName": DNS + ".", "ID": "nAbC123"}}
FAKE = """\
#!{python}
import json, os, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_TS_LOG"], "a") as fh:
    fh.write(json.dumps({{"args": args, "pid": os.getpid()}}) + "\\n")
with open(os.environ["FAKE_TS_STATE"]) as fh:
    state = json.load(fh)
if " ".join(args) in state.get("hang", []) or (args and args[0] in state.get("hang", [])):
    time.sleep(60)
if args[:1] == ["status"]:
    print(state.get("status_text", json.dumps(state.get("status"))))
    sys.exit(state.get("status_code", 0))
path = args[args.index("--set-path") + 1]
if args[-1] != "off" and path in state.get("fail", []):
    print("error: " + args[0] + " is not enabled for this node", file=sys.stderr)
    sys.exit(1)
if args[-1] == "off" and path not in state.get("mounted", []):
    sys.exit(1)
"""


class FakeTailscale:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "calls.jsonl"
        self.state_file = root / "state.json"
        self.state: dict[str, Any] = {"status": STATUS}
        self.save()

    def save(self) -> None:
        self.state_file.write_text(json.dumps(self.state))

    def set(self, **state: Any) -> None:
        self.state.update(state)
        self.save()

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def calls(self) -> list[list[str]]:
        return [record["args"] for record in self.records()]


@pytest.fixture
def fake_ts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTailscale]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "tailscale"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(0o755)
    fake = FakeTailscale(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_TS_LOG", str(fake.log))
    monkeypatch.setenv("FAKE_TS_STATE", str(fake.state_file))
    yield fake


STATUS_CALL = ["status", "--json", "--peers=false"]
ROUTES = [Route("/voice/webhook", "/voice/webhook"), Route("/voice/stream", "/voice/stream")]
ORIGIN = "http://127.0.0.1:3334"


def mount(mode: str, path: str, target: str, *port: str) -> list[str]:
    return [mode, "--bg", "--yes", *port, "--set-path", path, target]


async def test_funnel_mounts_every_route_and_unmounts_in_reverse(fake_ts: FakeTailscale) -> None:
    tunnel = TailscaleTunnel("funnel", 443, ROUTES)
    url = await tunnel.start(ORIGIN)
    assert url == f"https://{DNS}/voice/webhook"
    assert fake_ts.calls() == [
        STATUS_CALL,
        mount("funnel", "/voice/webhook", ORIGIN + "/voice/webhook"),
        mount("funnel", "/voice/stream", ORIGIN + "/voice/stream"),
    ]
    fake_ts.set(mounted=["/voice/webhook", "/voice/stream"])
    await tunnel.stop()
    await tunnel.stop()  # idempotent: nothing more is run
    assert fake_ts.calls()[3:] == [
        mount("funnel", "/voice/stream", "off"),
        mount("funnel", "/voice/webhook", "off"),
    ]


async def test_other_https_ports_are_named_in_commands_and_url(fake_ts: FakeTailscale) -> None:
    tunnel = TailscaleTunnel("funnel", 8443, ROUTES[:1])
    assert await tunnel.start(ORIGIN) == f"https://{DNS}:8443/voice/webhook"
    assert fake_ts.calls()[1] == mount(
        "funnel", "/voice/webhook", ORIGIN + "/voice/webhook", "--https", "8443"
    )
    serve = TailscaleTunnel("serve", 3000, ROUTES[:1])
    assert await serve.start(ORIGIN) == f"https://{DNS}:3000/voice/webhook"


@pytest.mark.parametrize("port", [80, 444, 3000, 8080, 9443])
async def test_funnel_only_on_443_8443_10000(fake_ts: FakeTailscale, port: int) -> None:
    with pytest.raises(TailscaleError, match="443, 8443 and 10000"):
        await TailscaleTunnel("funnel", port, ROUTES).start(ORIGIN)
    assert fake_ts.calls() == []  # refused before running anything


async def test_a_failed_route_rolls_back_the_mounted_ones(fake_ts: FakeTailscale) -> None:
    fake_ts.set(fail=["/voice/stream"], mounted=["/voice/webhook"])
    tunnel = TailscaleTunnel("funnel", 443, ROUTES)
    with pytest.raises(TailscaleError) as caught:
        await tunnel.start(ORIGIN)
    message = caught.value.message
    assert "could not mount /voice/stream" in message and "not enabled for this node" in message
    assert "rolled back 1 mounted route(s)" in message
    assert caught.value.enable_url == "https://login.tailscale.com/f/funnel?node=nAbC123"
    assert fake_ts.calls()[-1] == mount("funnel", "/voice/webhook", "off")
    assert tunnel.mounted == []


async def test_the_first_route_failing_leaves_nothing_to_undo(fake_ts: FakeTailscale) -> None:
    fake_ts.set(fail=["/voice/webhook"])
    with pytest.raises(TailscaleError, match="rolled back 0"):
        await TailscaleTunnel("serve", 443, ROUTES).start(ORIGIN)
    assert [call[-1] for call in fake_ts.calls()] == ["--peers=false", ORIGIN + "/voice/webhook"]


@pytest.mark.parametrize(
    ("state", "words"),
    [
        ({"status": {"BackendState": "NeedsLogin", "Self": {}}}, "tailscale up"),
        ({"status": {"BackendState": "Running", "Self": {"DNSName": ""}}}, "MagicDNS"),
        ({"status": {"BackendState": "Running"}}, "MagicDNS"),
        ({"status_text": "not json"}, "did not print JSON"),
        ({"status_text": "[1, 2]"}, "unexpected shape"),
        ({"status_code": 1}, "tailscale status` failed"),
    ],
)
async def test_status_problems_are_explained_and_nothing_is_mounted(
    fake_ts: FakeTailscale, state: dict[str, Any], words: str
) -> None:
    fake_ts.set(**state)
    with pytest.raises(TailscaleError, match=words):
        await TailscaleTunnel("funnel", 443, ROUTES).start(ORIGIN)
    assert fake_ts.calls() == [STATUS_CALL]


async def test_a_hung_command_times_out_and_is_killed(fake_ts: FakeTailscale) -> None:
    assert COMMAND_TIMEOUT_S == 2.5 and TailscaleCli().timeout_s == 2.5
    fake_ts.set(hang=["status"])
    cli = TailscaleCli(timeout_s=0.3)
    with pytest.raises(TailscaleError, match=r"did not finish within 0\.3 s"):
        await TailscaleTunnel("funnel", 443, ROUTES, cli).start(ORIGIN)
    pid = fake_ts.records()[0]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped, not left running


async def test_a_hung_mount_times_out_and_rolls_back(fake_ts: FakeTailscale) -> None:
    hang = " ".join(mount("funnel", "/voice/stream", ORIGIN + "/voice/stream"))
    fake_ts.set(hang=[hang], mounted=["/voice/webhook"])
    with pytest.raises(TailscaleError, match=r"did not finish.*rolled back 1"):
        await TailscaleTunnel("funnel", 443, ROUTES, TailscaleCli(timeout_s=0.3)).start(ORIGIN)
    assert fake_ts.calls()[-1] == mount("funnel", "/voice/webhook", "off")


async def test_missing_tailscale_says_how_to_install(tmp_path: Path) -> None:
    cli = TailscaleCli(executable=str(tmp_path / "no-such-tailscale"))
    with pytest.raises(TailscaleError, match="not installed"):
        await cli.self_info()


@given(
    st.one_of(
        st.text(max_size=50),
        st.dictionaries(st.sampled_from(["BackendState", "Self", "X"]), st.text(max_size=20)).map(
            json.dumps
        ),
        st.fixed_dictionaries(
            {"Self": st.dictionaries(st.sampled_from(["DNSName", "ID"]), st.text(max_size=30))}
        ).map(json.dumps),
    )
)
def test_status_parser_accepts_only_a_usable_dns_name(text: str) -> None:
    try:
        info = parse_self(text)
    except TailscaleError:
        return
    assert info.dns_name and not info.dns_name.endswith(".") and ":" not in info.dns_name


def test_status_parser_strips_the_dot_and_keeps_the_node_id() -> None:
    info = parse_self(json.dumps(STATUS))
    assert (info.dns_name, info.node_id) == (DNS, "nAbC123")


# --- the Runtime: routes open once the server is bound, close when it stops ------------------


async def test_runtime_mounts_after_binding_and_unmounts_on_stop(
    fake_ts: FakeTailscale, tmp_path: Path
) -> None:
    config = parse_config(
        {
            "provider": "mock",
            "serve": {"port": 0},
            "tunnel": {"provider": "tailscale-funnel"},
            "streaming": {"enabled": False},
        },
        env={},
    )
    home = tmp_path / "home"
    runtime = Runtime(config, home, tunnel_factory=build_tunnel)
    server = await start_background(runtime)
    try:
        assert runtime.webhook_url() == f"https://{DNS}/voice/webhook"
        assert runtime.manager.webhook_url == runtime.webhook_url()
        assert runtime.stream_url() == f"wss://{DNS}/voice/stream"
        # mounted with the port the server really got (the config asked for any free one)
        assert fake_ts.calls()[1] == mount(
            "funnel", "/voice/webhook", f"http://127.0.0.1:{server.port}/voice/webhook"
        )
        record = read_exposure(home)
        assert record is not None and record["webhookUrl"] == runtime.webhook_url()
        assert record["tunnel"] == "tailscale-funnel" and record["pid"] == os.getpid()
    finally:
        fake_ts.set(mounted=["/voice/webhook"])
        await server.stop()
    assert fake_ts.calls()[-1] == mount("funnel", "/voice/webhook", "off")
    assert read_exposure(home) is None


async def test_runtime_with_a_failing_tunnel_does_not_start(
    fake_ts: FakeTailscale, tmp_path: Path
) -> None:
    fake_ts.set(fail=["/voice/webhook"])
    config = parse_config(
        {"provider": "mock", "serve": {"port": 45871}, "tailscale": {"mode": "funnel"}}, env={}
    )
    runtime = Runtime(config, tmp_path)
    with pytest.raises(TunnelError, match="could not mount /voice/webhook"):
        await runtime.start()
    assert not runtime.running
    assert runtime.webhook_url() == "http://127.0.0.1:45871/voice/webhook"


# --- voicecall expose --------------------------------------------------------------------------


def expose(tmp_path: Path, raw: dict[str, Any], *args: str) -> Any:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(raw))
    from voice_call.cli.main import cli

    env = {"VOICECALL_HOME": str(tmp_path / "home"), "VOICECALL_CONFIG": str(config)}
    return CliRunner().invoke(cli, ["expose", *args], env=env, catch_exceptions=False)


def test_expose_funnel_prints_the_seed_json(fake_ts: FakeTailscale, tmp_path: Path) -> None:
    raw = {"serve": {"port": 3334}, "streaming": {"enabled": True}, "provider": "twilio"}
    raw |= {"fromNumber": "+15550001111", "twilio": {"accountSid": "AC1", "authToken": "t"}}
    result = expose(tmp_path, raw, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "ok": True,
        "mode": "funnel",
        "path": "/voice/webhook",
        "streamPaths": ["/voice/stream"],
        "localUrl": "http://127.0.0.1:3334/voice/webhook",
        "publicUrl": f"https://{DNS}/voice/webhook",
    }
    assert fake_ts.calls()[2] == mount("funnel", "/voice/stream", ORIGIN + "/voice/stream")


def test_expose_paths_and_port_options(fake_ts: FakeTailscale, tmp_path: Path) -> None:
    result = expose(
        tmp_path, {}, "--mode", "serve", "--path", "pfx/voice/webhook/", "--port", "4000"
    )
    assert result.exit_code == 0, result.output
    assert f"https://{DNS}/pfx/voice/webhook" in result.output and "tailnet" in result.output
    assert fake_ts.calls()[1] == mount(
        "serve", "/pfx/voice/webhook", "http://127.0.0.1:4000/voice/webhook"
    )


def test_expose_failure_gives_the_enable_hint_and_exit_1(
    fake_ts: FakeTailscale, tmp_path: Path
) -> None:
    fake_ts.set(fail=["/voice/webhook"])
    result = expose(tmp_path, {}, "--json")
    assert result.exit_code == 1
    body = json.loads(result.output)
    assert body["ok"] is False and body["publicUrl"] is None
    assert body["hint"]["enableUrl"] == "https://login.tailscale.com/f/funnel?node=nAbC123"


def test_expose_off_removes_serve_and_funnel_routes(fake_ts: FakeTailscale, tmp_path: Path) -> None:
    fake_ts.set(mounted=["/voice/webhook"])
    result = expose(tmp_path, {}, "--mode", "off", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body == {
        "ok": True,
        "mode": "off",
        "path": "/voice/webhook",
        "streamPaths": [],
        "removed": ["serve /voice/webhook", "funnel /voice/webhook"],
    }
    assert fake_ts.calls()[1:] == [
        mount("serve", "/voice/webhook", "off"),
        mount("funnel", "/voice/webhook", "off"),
    ]


@pytest.mark.parametrize(
    ("raw", "args", "words"),
    [
        ({"tailscale": {"port": 3000}}, [], "443, 8443 and 10000"),
        ({}, ["--path", "a b"], "not a URL path"),
        ({}, ["--port", "0"], "0"),
        ({"serve": {"port": 0}}, [], "pass --port"),
    ],
)
def test_expose_refuses_bad_input_with_exit_2(
    fake_ts: FakeTailscale, tmp_path: Path, raw: dict[str, Any], args: list[str], words: str
) -> None:
    result = expose(tmp_path, raw, *args)
    assert result.exit_code == 2 and words in result.output
    assert fake_ts.calls() == []
