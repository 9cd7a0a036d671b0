"""`voicecall demo --realtime`: a whole realtime voice call, as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from voice_call.cli.demo_realtime import (
    ANSWER,
    BARGE_IN,
    FIRST_AUDIO_MS,
    FOLLOW_UP,
    GOODBYE,
    GREETING,
    LONG_ANSWER,
    QUESTION,
    SILENCE_MS,
)
from voice_call.cli.main import cli


def voicecall(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run `voicecall ARGS` with a fresh HOME and no keys in the environment."""
    home = tmp_path / "home"
    home.mkdir()
    keys = ("VOICECALL_", "OPENAI_", "GEMINI_", "GOOGLE_", "TWILIO_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(keys)}
    env["HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-m", "voice_call.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, home


def test_the_realtime_demo_runs_a_whole_call_and_narrates_it(tmp_path: Path) -> None:
    started = time.monotonic()
    done, home = voicecall(tmp_path, "demo", "--realtime")
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - started < 40
    out = done.stdout
    assert "fake OpenAI Realtime model" in out
    assert f"model:  {GREETING}" in out  # the greeting, heard
    assert f"caller: {QUESTION}" in out and f"model:  {ANSWER}" in out
    # the long answer was cut by the callee, and the model told how much was heard
    assert "cut: the caller talked over it" in out and "the model was told" in out
    assert f"caller: {BARGE_IN}" in out and f"model:  {GOODBYE}" in out
    assert "the model called end_call" in out and "call ended: hangup-bot" in out
    assert out.count("model answering — voice-to-voice") == 3
    assert "voice-to-voice:" in out and "tools the model called: end_call" in out
    assert "barge-ins: 1" in out
    assert "Traceback" not in done.stderr
    assert not (home / ".voicecall").exists()  # the demo never touches the real state folder


def test_the_realtime_demo_on_gemini_prints_json(tmp_path: Path) -> None:
    done, _ = voicecall(tmp_path, "demo", "--realtime", "--model", "google", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True and result["model"] == "google"
    assert result["endReason"] == "hangup-bot"
    lines = [(e["speaker"], e["text"]) for e in result["transcript"]]
    assert lines[:4] == [
        ("bot", GREETING),
        ("user", QUESTION),
        ("bot", ANSWER),
        ("user", FOLLOW_UP),
    ]
    cut = lines[4]
    assert cut[0] == "bot" and LONG_ANSWER.startswith(cut[1]) and cut[1] != LONG_ANSWER
    assert ("bot", GOODBYE) in lines
    assert result["bargeIns"] == 1 and result["toolsCalled"] == ["end_call"]
    # one figure per answered turn, each at least the fake model's own share of it
    figures = result["voiceToVoiceMs"]
    assert len(figures) == 3 and all(ms >= SILENCE_MS + FIRST_AUDIO_MS - 50 for ms in figures)


def test_model_without_realtime_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["demo", "--model", "google"])
    assert result.exit_code == 2
    assert "--model picks the fake realtime model — add --realtime" in result.output


def test_an_unknown_model_is_refused() -> None:
    result = CliRunner().invoke(cli, ["demo", "--realtime", "--model", "anthropic"])
    assert result.exit_code == 2
    assert "'anthropic' is not one of 'openai', 'google'" in result.output
