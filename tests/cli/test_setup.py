"""`voicecall setup` and `voicecall smoke`.

Each named check fails on its own broken input while every other check passes; the output is
`OK`/`FAIL`/`SKIP` lines or JSON with exit 1 on any FAIL; `smoke` places nothing unless both
`--to` and `--yes` are given, and then exactly one call through a running server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from voice_call.cli.main import cli
from voice_call.cli.setup_checks import (
    CHECK_IDS,
    SetupReport,
    load_for_setup,
    run_checks,
    with_placeholder_credentials,
)
from voice_call.config import parse_config
from voice_call.runtime import Runtime
from voice_call.server.serve import RunningServer, start_background

ROOT = Path(__file__).resolve().parents[2]
GOOD_MOCK: dict[str, Any] = {"provider": "mock", "serve": {"port": 0}}
EMULATED_TWILIO: dict[str, Any] = {
    "provider": "twilio",
    "fromNumber": "+15550001111",
    "twilio": {
        "accountSid": "AC" + "0" * 32,
        "authToken": "sim-auth-token",
        "apiBaseUrl": "http://127.0.0.1:9",  # a local emulator: local webhooks are right
    },
}
REAL_TWILIO: dict[str, Any] = {
    "provider": "twilio",
    "fromNumber": "+15550001111",
    "twilio": {"accountSid": "AC" + "0" * 32, "authToken": "secret"},
}


REALTIME_TWILIO: dict[str, Any] = {
    **EMULATED_TWILIO,
    "inboundPolicy": "allowlist",
    "realtime": {"enabled": True},
}


def write(tmp_path: Path, raw: dict[str, Any], name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(raw))
    return path


async def checks(tmp_path: Path, raw: dict[str, Any]) -> SetupReport:
    return await run_checks(write(tmp_path, raw), tmp_path / "home", env={})


def statuses(report: SetupReport) -> dict[str, str]:
    return {check.id: check.status for check in report.checks}


def only_failing(report: SetupReport) -> list[str]:
    return [check.id for check in report.checks if check.status == "fail"]


def message(report: SetupReport, check_id: str) -> str:
    return next(check.message for check in report.checks if check.id == check_id)


# --- every check, passing and failing on its own ------------------------------------------------


async def test_a_good_mock_setup_passes_every_check(tmp_path: Path) -> None:
    report = await checks(tmp_path, GOOD_MOCK)
    assert [check.id for check in report.checks] == list(CHECK_IDS)
    assert statuses(report) == dict.fromkeys(CHECK_IDS, "ok")
    assert report.ok


async def test_an_emulated_carrier_passes_every_check(tmp_path: Path) -> None:
    report = await checks(tmp_path, EMULATED_TWILIO)
    assert report.ok, report.wire()
    assert "local emulator" in message(report, "webhook-exposure")


@pytest.mark.parametrize(
    ("check_id", "raw", "words"),
    [
        ("config", {**GOOD_MOCK, "enabled": False}, "enabled: true"),
        (
            "provider-credentials",
            {**EMULATED_TWILIO, "twilio": {"apiBaseUrl": "http://127.0.0.1:9"}},
            "twilio.accountSid",
        ),
        ("provider-credentials", {**EMULATED_TWILIO, "fromNumber": ""}, "fromNumber"),
        ("webhook-exposure", REAL_TWILIO, "loopback"),
        (
            "webhook-exposure",
            {**REAL_TWILIO, "publicUrl": "https://10.0.0.7/voice/webhook"},
            "private",
        ),
        ("webhook-exposure", {**REAL_TWILIO, "tunnel": {"provider": "ngrok"}}, "NGROK_AUTHTOKEN"),
        (
            "webhook-exposure",
            {**REAL_TWILIO, "tunnel": {"provider": "tailscale-serve"}},
            "tailscale-funnel",
        ),
        (
            "webhook-reachable",
            {**GOOD_MOCK, "publicUrl": "http://127.0.0.1:9/voice/webhook"},
            "nothing answered",
        ),
        (
            "speech-keys",
            {**EMULATED_TWILIO, "streaming": {"enabled": True}},
            "OPENAI_API_KEY",
        ),
        (
            "config",
            {**GOOD_MOCK, "realtime": {"enabled": True}},
            "the mock provider has none",
        ),
        ("speech-keys", REALTIME_TWILIO, "realtime.providers.openai.apiKey"),
        (
            "speech-keys",
            {**REALTIME_TWILIO, "realtime": {"enabled": True, "provider": "google"}},
            "realtime.providers.google.apiKey",
        ),
        ("responder", {**GOOD_MOCK, "inboundPolicy": "open"}, "responder.provider"),
    ],
)
async def test_each_check_fails_on_its_own_broken_input(
    tmp_path: Path, check_id: str, raw: dict[str, Any], words: str
) -> None:
    report = await checks(tmp_path, raw)
    assert only_failing(report) == [check_id], report.wire()
    assert words in message(report, check_id)
    assert not report.ok


@pytest.mark.parametrize(
    ("realtime", "env", "words"),
    [
        ({"enabled": True}, {"OPENAI_API_KEY": "sk-env"}, "realtime voice: openai"),
        (
            {"enabled": True, "providers": {"openai": {"apiKey": "sk-file"}}},
            {},
            "realtime voice: openai",
        ),
        (
            {"enabled": True, "provider": "google"},
            {"GEMINI_API_KEY": "g"},
            "realtime voice: google",
        ),
        (
            {"enabled": True, "provider": "google"},
            {"GOOGLE_API_KEY": "g"},
            "realtime voice: google",
        ),
    ],
)
async def test_realtime_voice_passes_with_its_provider_key(
    tmp_path: Path, realtime: dict[str, Any], env: dict[str, str], words: str
) -> None:
    raw = {**REALTIME_TWILIO, "realtime": realtime}
    report = await run_checks(write(tmp_path, raw), tmp_path / "home", env=env)
    assert report.ok, report.wire()
    assert words in message(report, "speech-keys")


async def test_a_missing_realtime_key_says_which_setting_and_variable_to_set(
    tmp_path: Path,
) -> None:
    google = {**REALTIME_TWILIO, "realtime": {"enabled": True, "provider": "google"}}
    report = await checks(tmp_path, google)
    assert "GEMINI_API_KEY / GOOGLE_API_KEY" in message(report, "speech-keys")
    report = await checks(tmp_path, REALTIME_TWILIO)
    assert "openaiApiKey / OPENAI_API_KEY" in message(report, "speech-keys")
    assert str(tmp_path / "config.json") in message(report, "speech-keys")


async def test_an_invalid_config_fails_config_and_skips_the_rest(tmp_path: Path) -> None:
    report = await checks(tmp_path, {**GOOD_MOCK, "maxDurationSeconds": "long"})
    assert statuses(report) == {"config": "fail", **dict.fromkeys(CHECK_IDS[1:], "skip")}
    assert "maxDurationSeconds" in message(report, "config")


async def test_an_unreadable_config_file_fails_config(tmp_path: Path) -> None:
    path = tmp_path / "broken.json5"
    path.write_text("{ provider: ")
    report = await run_checks(path, tmp_path, env={})
    assert statuses(report)["config"] == "fail" and "JSON5" in message(report, "config")
    missing = await run_checks(tmp_path / "absent.json5", tmp_path, env={})
    assert "file not found" in message(missing, "config")


async def test_no_config_file_means_defaults(tmp_path: Path) -> None:
    report = await run_checks(None, tmp_path, env={"HOME": str(tmp_path)})
    assert report.ok and "defaults" in message(report, "config")


def test_credentials_are_told_apart_from_other_errors(tmp_path: Path) -> None:
    raw = {"provider": "telnyx", "maxDurationSeconds": 0}
    loaded = load_for_setup(write(tmp_path, raw), env={})
    assert loaded.config is None
    assert len(loaded.errors) == 1 and loaded.errors[0].startswith("maxDurationSeconds")
    keys = sorted(error.split(":")[0] for error in loaded.credential_errors)
    assert keys == ["fromNumber", "telnyx.apiKey", "telnyx.connectionId", "telnyx.publicKey"]


def test_credentials_from_the_environment_count(tmp_path: Path) -> None:
    raw = {"provider": "plivo", "fromNumber": "+15550001111"}
    env = {"PLIVO_AUTH_ID": "MA123", "PLIVO_AUTH_TOKEN": "tok"}
    assert load_for_setup(write(tmp_path, raw), env=env).credential_errors == []
    missing = load_for_setup(write(tmp_path, raw), env={}).credential_errors
    assert [error.split(":")[0] for error in missing] == ["plivo.authId", "plivo.authToken"]


def test_placeholders_go_inside_an_openclaw_file_and_leave_the_input_alone() -> None:
    raw = {"plugins": {"entries": {"voice-call": {"config": {"provider": "twilio"}}}}}
    filled = with_placeholder_credentials(raw)
    section = filled["plugins"]["entries"]["voice-call"]["config"]
    assert section["twilio"] == {"accountSid": "placeholder", "authToken": "placeholder"}
    assert section["fromNumber"] == "+15550000000"
    assert raw == {"plugins": {"entries": {"voice-call": {"config": {"provider": "twilio"}}}}}
    snake = {"provider": "plivo", "plivo": {"auth_id": "x"}, "from_number": "+15550001111"}
    assert with_placeholder_credentials(snake)["plivo"] == {
        "auth_id": "x",
        "authToken": "placeholder",
    }


# --- webhook-reachable against a live server -----------------------------------------------------


@pytest.fixture
async def mock_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    raw = {
        **GOOD_MOCK,
        "outbound": {"notifyHangupDelaySec": 0},
        "mock": {"answerDelayMs": 20, "replyDelayMs": 20},
    }
    write(tmp_path, raw)
    runtime = Runtime(parse_config(raw, env={}), tmp_path / "home")
    server = await start_background(runtime)
    yield server
    await server.stop()


async def test_reachable_uses_the_url_the_running_server_recorded(
    tmp_path: Path, mock_server: RunningServer
) -> None:
    report = await run_checks(tmp_path / "config.json", tmp_path / "home", env={})
    assert report.ok
    assert message(report, "webhook-reachable") == (
        f"{mock_server.url}/voice/webhook reaches this server"
    )


async def test_reachable_tells_another_server_from_ours(
    tmp_path: Path, mock_server: RunningServer
) -> None:
    raw = {**GOOD_MOCK, "publicUrl": f"{mock_server.url}/elsewhere"}
    report = await run_checks(write(tmp_path, raw, "other.json"), tmp_path / "other", env={})
    assert only_failing(report) == ["webhook-reachable"]
    assert "answered HTTP 404, not this server" in message(report, "webhook-reachable")


async def test_reachable_needs_a_server_when_the_carrier_is_real(tmp_path: Path) -> None:
    from voice_call.cli.setup_checks import Check, check_reachable
    from voice_call.security.exposure import needs_public_webhook

    config = parse_config({**REAL_TWILIO, "tunnel": {"provider": "ngrok"}}, env={})
    assert needs_public_webhook(config)
    exposure = Check("webhook-exposure", "ok", "ngrok")
    check = await check_reachable(config, tmp_path, exposure)
    assert check.status == "fail" and "start `voicecall serve`" in check.message
    skipped = await check_reachable(config, tmp_path, Check("webhook-exposure", "fail", "x"))
    assert skipped.status == "skip"


# --- the command line --------------------------------------------------------------------------


def invoke(tmp_path: Path, *args: str, home: Path | None = None) -> Result:
    env = {
        "VOICECALL_HOME": str(home or tmp_path / "home"),
        "VOICECALL_CONFIG": str(tmp_path / "config.json"),
    }
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_setup_prints_one_line_per_check_and_exits_0(tmp_path: Path) -> None:
    write(tmp_path, GOOD_MOCK)
    result = invoke(tmp_path, "setup")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"OK {check}" for check in CHECK_IDS]


def test_setup_fail_lines_say_how_to_fix_and_exit_1(tmp_path: Path) -> None:
    write(tmp_path, REAL_TWILIO)
    result = invoke(tmp_path, "setup")
    assert result.exit_code == 1
    assert "FAIL webhook-exposure: twilio cannot reach the webhook URL" in result.output
    assert "set publicUrl" in result.output
    assert "SKIP webhook-reachable: fix webhook-exposure first" in result.output


def test_setup_json(tmp_path: Path) -> None:
    write(tmp_path, {**GOOD_MOCK, "inboundPolicy": "open"})
    result = invoke(tmp_path, "setup", "--json")
    assert result.exit_code == 1
    body = json.loads(result.output)
    assert body["ok"] is False
    assert [c["id"] for c in body["checks"]] == list(CHECK_IDS)
    responder = body["checks"][-1]
    assert responder["ok"] is False and responder["status"] == "fail"
    assert set(responder) == {"id", "ok", "status", "message"}


def test_smoke_dry_runs_place_nothing(tmp_path: Path) -> None:
    write(tmp_path, GOOD_MOCK)
    skipped = invoke(tmp_path, "smoke")
    assert skipped.exit_code == 0 and "live-call: skipped" in skipped.output
    dry = invoke(tmp_path, "smoke", "--to", "+1 (555) 000-1234", "--json")
    assert dry.exit_code == 0, dry.output
    body = json.loads(dry.output)
    assert body["liveCall"] is False and body["wouldCall"] == "+15550001234"
    yes_only = invoke(tmp_path, "smoke", "--yes")
    assert yes_only.exit_code == 0 and "skipped" in yes_only.output
    assert not (tmp_path / "home" / "mock-carrier.jsonl").exists()  # nothing was dialled


def test_smoke_refuses_a_bad_number(tmp_path: Path) -> None:
    write(tmp_path, GOOD_MOCK)
    result = invoke(tmp_path, "smoke", "--to", "555-1234", "--yes")
    assert result.exit_code == 2 and "E.164" in result.output


def test_smoke_does_not_call_when_setup_fails(tmp_path: Path) -> None:
    write(tmp_path, {**GOOD_MOCK, "inboundPolicy": "open"})
    result = invoke(tmp_path, "smoke", "--to", "+15550001234", "--yes", "--json")
    assert result.exit_code == 1
    body = json.loads(result.output)
    assert body["liveCall"] is False and "callId" not in body


def dialled(home: Path) -> list[dict[str, Any]]:
    ledger = home / "mock-carrier.jsonl"
    rows = [json.loads(line) for line in ledger.read_text().splitlines()] if ledger.exists() else []
    return [row for row in rows if row["op"] == "dial"]


async def test_smoke_dry_run_with_a_server_places_nothing(
    tmp_path: Path, mock_server: RunningServer
) -> None:
    result = await asyncio.to_thread(invoke, tmp_path, "smoke", "--to", "+15550001234")
    assert result.exit_code == 0, result.output
    assert "dry run for +15550001234" in result.output
    assert dialled(tmp_path / "home") == []


async def test_smoke_with_to_and_yes_places_one_call_and_reports_it(
    tmp_path: Path, mock_server: RunningServer
) -> None:
    args = ("smoke", "--to", "+15550001234", "--yes", "--json", "--wait", "20")
    result = await asyncio.to_thread(invoke, tmp_path, *args)
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    outcome = body["outcome"]
    assert body["ok"] and body["liveCall"] and body["callId"] == outcome["callId"]
    assert outcome["ended"] and outcome["answered"] and outcome["state"] == "hangup-bot"
    calls = dialled(tmp_path / "home")
    assert len(calls) == 1 and calls[0]["to"] == "+15550001234"
    assert calls[0]["callId"] == body["callId"]


async def test_smoke_text_output_describes_the_call(
    tmp_path: Path, mock_server: RunningServer
) -> None:
    result = await asyncio.to_thread(invoke, tmp_path, "smoke", "-t", "+15550001234", "--yes")
    assert result.exit_code == 0, result.output
    last = result.output.splitlines()[-1]
    assert last.startswith("live-call: ") and "answered, ended hangup-bot after" in last


# --- the benchmark harness keeps working ----------------------------------------------------------


def test_exposure_bench_smoke() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "exposure", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "voicecall setup --json" in out and "tailscale" in out
