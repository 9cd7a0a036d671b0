"""`voicecall demo --lang zh-TW`: a whole Mandarin call offline, in Traditional Chinese."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from voice_call.cli.demo import CALLEE_LINES_ZH_TW, GREETING_ZH_TW
from voice_call.cli.main import cli


def test_demo_in_zh_tw_holds_the_call_in_traditional_chinese(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICECALL_", "LC_", "LANG"))}
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "voice_call.cli", "demo", "--lang", "zh-TW"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert GREETING_ZH_TW in out
    for line in CALLEE_LINES_ZH_TW:
        assert line in out  # the caller's words come back as said: Traditional, unconverted
        assert f"您說：{line}" in out  # the echo responder answers in Mandarin
    assert "You said" not in out
    assert "Traceback" not in done.stderr
    assert not (tmp_path / ".voicecall").exists()


def test_demo_lang_cannot_be_combined_with_realtime() -> None:
    result = CliRunner().invoke(cli, ["demo", "--realtime", "--lang", "zh-TW"])
    assert result.exit_code == 2
    assert "--realtime" in result.output
