"""`voicecall config check` and `voicecall tool-schema` (cli/config.py), run as a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.stack import Cli, base_env, write_config

SECRET = "tw-secret-token-0123456789abcdef"


def test_config_check_prints_redacted_config(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "good.json5",
        {
            "provider": "mock",
            "toNumber": "+15555550123",
            "twilio": {"accountSid": "AC0123", "authToken": SECRET},
            "openaiApiKey": SECRET,
        },
    )
    cli = Cli(base_env(tmp_path), config)
    done = cli.run("config", "check")
    assert done.returncode == 0, done.stderr
    assert "Config OK" in done.stdout
    assert SECRET not in done.stdout + done.stderr
    shown = json.loads(done.stdout.split("\n", 1)[1])
    assert shown["provider"] == "mock"
    assert shown["twilio"]["authToken"].startswith("***")
    machine = cli.json("config", "check")
    assert machine["ok"] is True and machine["path"] == str(config)
    assert SECRET not in json.dumps(machine)


def test_config_check_lists_every_error(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "bad.json5",
        {"provider": "twilio", "fromNumber": "12", "serve": {"port": "abc"}, "bogus": 1},
    )
    done = Cli(base_env(tmp_path), config).run("config", "check")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    for path in ("fromNumber:", "serve.port:", "bogus:", "twilio.accountSid:", "twilio.authToken:"):
        assert any(line.strip().startswith(path) for line in lines), (path, done.stderr)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    done = Cli(base_env(tmp_path), tmp_path / "nope.json5").run("config", "check")
    assert done.returncode == 2
    assert "file not found" in done.stderr


def test_tool_schema_prints_the_schema(tmp_path: Path) -> None:
    done = Cli(base_env(tmp_path), None).run("tool-schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert schema["function"]["name"] == "voice_call"
