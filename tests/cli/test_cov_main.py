"""`main()`: with the ngrok SDK loaded it leaves through os._exit, keeping the exit code and
message that would otherwise be lost to a crash in interpreter finalisation."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from typing import Any

import pytest

main_module = importlib.import_module("voice_call.cli.main")  # not the `main` function


class Exited(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def run_main(monkeypatch: pytest.MonkeyPatch, argv: list[str], *, ngrok: bool) -> Any:
    def fake_exit(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(main_module.os, "_exit", fake_exit)
    if ngrok:
        monkeypatch.setitem(sys.modules, "ngrok", types.ModuleType("ngrok"))
    else:
        monkeypatch.delitem(sys.modules, "ngrok", raising=False)
    monkeypatch.setattr(sys, "argv", ["voicecall", *argv])
    with pytest.raises((Exited, SystemExit)) as caught:
        main_module.main()
    return caught.value


def test_without_ngrok_main_exits_normally(monkeypatch: pytest.MonkeyPatch) -> None:
    raised = run_main(monkeypatch, ["--version"], ngrok=False)
    assert isinstance(raised, SystemExit) and raised.code == 0


@pytest.mark.parametrize(("argv", "code"), [(["--version"], 0), (["no-such-command"], 2)])
def test_with_ngrok_loaded_main_keeps_the_exit_code(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], code: int
) -> None:
    raised = run_main(monkeypatch, argv, ngrok=True)
    assert isinstance(raised, Exited) and raised.code == code


@pytest.mark.parametrize(("exit_code", "expected"), [(None, 0), ("server gone", 1), (3, 3)])
def test_with_ngrok_loaded_a_text_exit_is_printed_and_becomes_1(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    exit_code: object,
    expected: int,
) -> None:
    def leave() -> None:
        raise SystemExit(exit_code)

    monkeypatch.setattr(main_module, "cli", lambda **_: leave())
    raised = run_main(monkeypatch, [], ngrok=True)
    assert isinstance(raised, Exited) and raised.code == expected
    err = capsys.readouterr().err
    assert ("server gone" in err) is (exit_code == "server gone")


def test_the_module_runs_as_a_script() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "voice_call.cli.main", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("voicecall, version")
