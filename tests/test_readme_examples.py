"""Every README.md example a new user can copy works as written (offline, no account).

The test reads README.md as it is now (other changes to it need no change here) and checks:

- **Config examples.** Every ```json5 block, and every `*.json5` file a shell block writes
  (`cat > f.json5 <<'EOF'` … `EOF`), loads through `load_config` from a file. How a block is
  taken: a block that is a JSON5 object on its own is a whole config file (pasted into an empty
  file, every other key at its default); a block that is not (`key: value` lines, a fragment to
  paste inside the file's top-level braces) is wrapped in `{ }` first. The environment holds
  only what the README says a user of that block provides: an OpenAI key, and the variables
  the block itself names (`"${NAME}"`, `{source: "env", id: "NAME"}`).
- **Console transcripts** (```console): `$ cat FILE` followed by lines writes FILE with them;
  each `$ voicecall …` runs; its exit code must be 0, or what a following `$ echo $?` shows;
  every output line shown is in the real output, except lines that elide (`…`, `{ … }`) or
  name a machine-specific path (`/root/`).
- **Command lines.** Every `voicecall …` command in a ```bash/```sh/```console block, and every
  inline code span that is a complete command (no `[optional]` or `a|b` synopsis), must parse:
  the command exists and takes those options (click parses it without running it). The ones
  that can run offline (OFFLINE below) are run in a fresh state folder and must exit 0; those
  that need a server, a running call or a carrier are not run, each listed in NOT_RUN with the
  reason (and the test that covers it); nor is a line with a placeholder to fill in (`<id>`,
  `ID`). A command in neither list fails the test, so a new
  README command gets classified here.
- **`--help`** of every command and group exits 0.

Not run: ```python blocks (they need a running server; tests/client covers the Client) and
curl lines (JSON-RPC over a running server; tests/server covers them).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
import json5
import pytest
from click.testing import CliRunner

from voice_call.cli.common import RootSettings
from voice_call.cli.main import COMMANDS
from voice_call.cli.main import cli as voicecall
from voice_call.config import load_config

README = Path(__file__).resolve().parents[1] / "README.md"
SHELL_LANGS = ("bash", "sh", "shell", "console")
# What a user of the README's config blocks has in the environment (the responder block says
# "responder.apiKey (else OPENAI_API_KEY)").
USER_ENV = {"OPENAI_API_KEY": "sk-readme-example"}

# Commands (their path of names) that run offline and must exit 0 as written.
OFFLINE = {
    ("demo",): "a whole simulated call, in a temporary folder",
    ("config", "check"): "reads the config only",
    ("tool-schema",): "prints the tool schema",
    ("latency",): "reads the store (none yet: an empty summary)",
    ("status",): "reads the store read-only when no server runs",
}
# Commands that are not run here, and why (a comment a reader can check, not a skip).
NOT_RUN = {
    ("serve",): "runs until stopped; tests/cli/test_call.py drives a real `voicecall serve`",
    ("sim",): "an emulator that runs until stopped; tests/cli/test_sim.py plays the recipe",
    ("mcp",): "serves MCP until stopped; tests/agent covers it",
    ("call",): "places a call through a running server; tests/cli/test_call.py",
    ("start",): "places a call through a running server; tests/cli/test_parity_start.py",
    ("continue",): "needs a running server and a live call; tests/cli/test_call.py",
    ("speak",): "needs a running server and a live call; tests/cli/test_call.py",
    ("dtmf",): "needs a running server and a live call; tests/cli/test_call.py",
    ("end",): "needs a running server and a call; tests/cli/test_call.py",
    ("transfer",): "needs a running server and a live call; tests/cli/test_transfer.py",
    ("tail",): "follows a running server (or a store with calls); tests/cli/test_parity_tail.py",
    ("setup",): "its webhook check needs `serve` running; tests/cli/test_setup.py",
    ("smoke",): "may place a real call; tests/cli/test_setup.py",
    ("expose",): "needs Tailscale; tests/tunnel",
    ("console",): "needs a running server; tests/server/console/test_cli.py",
}


@dataclass
class Block:
    lang: str
    text: str
    line: int  # where the block starts in README.md, for messages


@dataclass
class Example:
    """One `voicecall` command line: its arguments, and what a transcript says of it."""

    args: list[str]
    where: str
    expected_code: int = 0
    shown: list[str] = field(default_factory=list)  # output lines a transcript shows
    files: dict[str, str] = field(default_factory=dict)  # written before it runs


def readme() -> str:
    return README.read_text(encoding="utf-8")


def fenced_blocks(markdown: str) -> list[Block]:
    blocks = []
    for match in re.finditer(r"^```(\w*)[^\n]*\n(.*?)^```", markdown, re.S | re.M):
        line = markdown.count("\n", 0, match.start()) + 1
        blocks.append(Block(match.group(1).lower(), match.group(2), line))
    return blocks


# ------------------------------------------------------------------------ config examples


def heredoc_configs(block: Block) -> list[tuple[str, str]]:
    """(name, text) of each `*.json5` file a shell block writes with a heredoc."""
    found = []
    pattern = r"cat\s+>\s*(\S+\.json5)\s+<<-?\s*'?(\w+)'?\n(.*?)^\2$"
    for match in re.finditer(pattern, block.text, re.S | re.M):
        found.append((match.group(1), match.group(3)))
    return found


def config_examples() -> list[tuple[str, str]]:
    examples = []
    for block in fenced_blocks(readme()):
        if block.lang == "json5":
            examples.append((f"README.md:{block.line} (json5 block)", block.text))
        elif block.lang in SHELL_LANGS:
            for name, text in heredoc_configs(block):
                examples.append((f"README.md:{block.line} ({name})", text))
    return examples


def as_config_file(text: str) -> str:
    """The file a user ends up with: the block itself, or a fragment inside `{ }`."""
    try:
        if isinstance(json5.loads(text), dict):
            return text
    except ValueError:
        pass
    return "{\n" + text + "\n}\n"


def referenced_env(text: str) -> dict[str, str]:
    """The variables a block reads (`"${NAME}"`, `{source: "env", id: "NAME"}`), set as its
    user would have them: a phone number for a number's variable, else a plain value."""
    names = re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)\}", text)
    names += re.findall(r"source:\s*[\"']env[\"'],\s*id:\s*[\"']([A-Z][A-Z0-9_]*)[\"']", text)
    number = re.compile(r"FROM|NUMBER|PHONE|(^|_)TO($|_)")
    return {n: "+15550001234" if number.search(n) else "readme-example-value" for n in names}


def test_the_readme_has_config_examples() -> None:
    assert len(config_examples()) >= 2  # the file shape, and the offline Twilio recipe


@pytest.mark.parametrize(("where", "text"), config_examples())
def test_each_config_example_loads(where: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "config.json5"
    path.write_text(as_config_file(text), encoding="utf-8")
    env = {"HOME": str(tmp_path), "VOICECALL_HOME": str(tmp_path / "state"), **USER_ENV}
    env.update(referenced_env(text))
    load_config(path, env)  # raises ConfigError, naming every problem, when it does not load


# ------------------------------------------------------------------------ command lines


def commands_in(line: str) -> list[list[str]]:
    """The `voicecall` invocations in one shell line (split at && || ; | &)."""
    line = re.sub(r"(^|\s)#.*$", "", line)  # a comment starts a word (`1w2#` is digits)
    try:
        tokens = shlex.split(line)
    except ValueError:
        return []
    found, current = [], []
    for token in [*tokens, "&&"]:
        if token in ("&&", "||", ";", "|", "&"):
            if current and Path(current[0]).name == "voicecall":
                found.append(current[1:])
            current = []
        else:
            current.append(token)
    return found


def shell_lines(text: str) -> list[tuple[int, str]]:
    """(offset, line): continuations joined, heredoc bodies left out."""
    lines: list[tuple[int, str]] = []
    heredoc_end: str | None = None
    pending = ""
    for offset, raw in enumerate(text.splitlines()):
        if heredoc_end is not None:
            if raw.strip() == heredoc_end:
                heredoc_end = None
            continue
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        line, pending = pending + raw, ""
        start = re.search(r"<<-?\s*'?(\w+)'?", line)
        if start:
            heredoc_end = start.group(1)
        lines.append((offset, line))
    return lines


def transcript_examples(block: Block) -> list[Example]:
    """The commands of a ```console block, with what it shows of each."""
    examples: list[Example] = []
    files: dict[str, str] = {}
    current: Example | None = None
    catting: str | None = None
    for offset, raw in enumerate(block.text.splitlines()):
        if raw.startswith("$ "):
            command = raw[2:].strip()
            catting, current = None, None
            cat = re.fullmatch(r"cat\s+(\S+)", command)
            code = re.fullmatch(r"echo \$\?", command)
            if cat:
                catting = cat.group(1)
                files[catting] = ""
            elif code:
                catting = "$?"
            else:
                for args in commands_in(command):
                    where = f"README.md:{block.line + 1 + offset}"
                    current = Example(args, where, files=dict(files))
                    examples.append(current)
            continue
        if catting == "$?":
            examples[-1].expected_code = int(raw.strip())
        elif catting is not None:
            files[catting] += raw + "\n"
        elif current is not None:
            current.shown.append(raw)
    return examples


def inline_commands(markdown: str) -> list[Example]:
    """Code spans that are a whole `voicecall` command (not a synopsis with [ ] or a|b)."""
    fences = [m.span() for m in re.finditer(r"^```.*?^```", markdown, re.S | re.M)]
    found = []
    for match in re.finditer(r"`(voicecall [^`]+)`", markdown):
        if any(start <= match.start() < end for start, end in fences):
            continue
        span = " ".join(match.group(1).split())
        if any(mark in span for mark in ("[", "|", "…", "...")):
            continue
        line = markdown.count("\n", 0, match.start()) + 1
        found.extend(Example(args, f"README.md:{line} (inline)") for args in commands_in(span))
    return found


def examples() -> list[Example]:
    markdown = readme()
    found: list[Example] = []
    for block in fenced_blocks(markdown):
        if block.lang == "console":
            found.extend(transcript_examples(block))
        elif block.lang in SHELL_LANGS:
            for offset, line in shell_lines(block.text):
                where = f"README.md:{block.line + 1 + offset}"
                found.extend(Example(args, where) for args in commands_in(line))
    return found + inline_commands(markdown)


def parse(args: list[str]) -> tuple[str, ...]:
    """Parse `voicecall ARGS` as click would, running nothing; the command's path of names.
    A bad option, a bad choice or a missing required option raises click's UsageError."""
    ctx = voicecall.make_context("voicecall", list(args))
    ctx.obj = RootSettings(None, False)  # what the root callback sets before a command
    path: list[str] = []
    group: click.Command = voicecall
    rest = list(args)
    while isinstance(group, click.Group):
        # A group's parser stops at the command name: the name and what follows are left.
        remaining = ctx.args
        rest = rest[len(rest) - len(remaining) - 1 :]
        name, command, rest = group.resolve_command(ctx, rest)
        assert name is not None and command is not None
        path.append(name)
        ctx = command.make_context(name, list(rest), parent=ctx)
        group = command
    return tuple(path)


def test_the_readme_has_command_examples() -> None:
    found = examples()
    assert len(found) >= 10
    assert any(e.shown for e in found)  # at least one console transcript


def test_every_example_parses_and_is_classified() -> None:
    problems = []
    for example in examples():
        try:
            path = parse(example.args)
        except click.exceptions.Exit as done:  # --help / --version: printed and left
            if done.exit_code != 0:
                problems.append(f"{example.where}: voicecall {shlex.join(example.args)}")
            continue
        except click.ClickException as exc:
            problems.append(f"{example.where}: voicecall {shlex.join(example.args)}: {exc}")
            continue
        if path[:2] not in OFFLINE and path[:1] not in OFFLINE and path[:1] not in NOT_RUN:
            problems.append(f"{example.where}: classify {path} in OFFLINE or NOT_RUN")
    assert problems == []


def offline_examples() -> list[Example]:
    runnable: list[Example] = []
    for example in examples():
        if any(e.args == example.args and e.files == example.files for e in runnable):
            continue  # the same line shown twice runs once
        try:
            path = parse(example.args)
        except click.exceptions.Exit:
            runnable.append(example)  # --help, --version
            continue
        except click.ClickException:
            continue  # reported by the test above
        if (path[:2] in OFFLINE or path[:1] in OFFLINE) and not placeholders(example):
            runnable.append(example)
    return runnable


def placeholders(example: Example) -> list[str]:
    """Values a reader must replace (`<id>`, `ID`, `N`): such a line is parsed, not run."""
    return [a for a in example.args if re.fullmatch(r"<[^>]+>|[A-Z][A-Z_]*", a)]


def user_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VOICECALL_", "TWILIO_", "TELNYX_", "PLIVO_", "NGROK_"))
        and k not in ("OPENAI_API_KEY", "ELEVENLABS_API_KEY")
    }
    env["HOME"] = str(tmp_path / "user-home")  # no config at the default place: defaults
    env["VOICECALL_HOME"] = str(tmp_path / "state")
    return env


def expected_lines(example: Example) -> list[str]:
    """The output lines a transcript shows that any machine prints the same."""
    keep = []
    for line in example.shown:
        text = " ".join(line.split())
        if not text or any(mark in text for mark in ("…", "...", "/root/", "{", "}")):
            continue
        keep.append(text)
    return keep


@pytest.mark.parametrize("example", offline_examples(), ids=lambda e: shlex.join(e.args))
def test_each_offline_example_runs_as_written(example: Example, tmp_path: Path) -> None:
    for name, text in example.files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "voice_call.cli", *example.args],
        cwd=tmp_path,
        env=user_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    shown = f"{example.where}: voicecall {shlex.join(example.args)}\n{done.stdout}\n{done.stderr}"
    assert done.returncode == example.expected_code, shown
    assert "Traceback" not in done.stderr, shown
    output = " ".join(f"{done.stdout}\n{done.stderr}".split())
    for line in expected_lines(example):
        assert line in output, f"{shown}\nthe README shows: {line}"


def every_command_path() -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for name in COMMANDS:
        paths.append((name,))
        command = voicecall.get_command(click.Context(voicecall), name)
        if isinstance(command, click.Group):
            paths.extend((name, sub) for sub in command.list_commands(click.Context(command)))
    return paths


@pytest.mark.parametrize("path", every_command_path(), ids=" ".join)
def test_help_of_each_command(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(
        voicecall, [*path, "--help"], prog_name="voicecall", env={"VOICECALL_CONFIG": ""}
    )
    assert result.exit_code == 0, result.output
    assert "Usage: voicecall " + " ".join(path) in result.output


def test_the_checks_catch_a_wrong_example() -> None:
    """The machinery itself: a wrong line or block fails, a fragment is pasted in braces."""
    with pytest.raises(click.UsageError, match="--bogus"):
        parse(["call", "--message", "hi", "--bogus"])
    with pytest.raises(click.UsageError, match="message"):
        parse(["call"])  # a required option left out
    assert parse(["--config", "x.json5", "config", "check"]) == ("config", "check")
    assert commands_in(".venv/bin/voicecall demo && voicecall dtmf --digits 1# & # bg") == [
        ["demo"],
        ["dtmf", "--digits", "1#"],
    ]
    assert as_config_file('provider: "mock",') == '{\nprovider: "mock",\n}\n'
    assert as_config_file('{provider: "mock"}') == '{provider: "mock"}'
    text = "$ cat f.json5\n{a: 1}\n$ voicecall config check\nOK\n$ echo $?\n2\n"
    [example] = transcript_examples(Block("console", text, 1))
    assert example.files == {"f.json5": "{a: 1}\n"} and example.expected_code == 2
    assert example.shown == ["OK"]
