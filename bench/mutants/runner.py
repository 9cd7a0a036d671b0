"""Run each mutant against its tests in a throw-away copy of the project.

The project's own files are never written: `src/`, `tests/` and `pyproject.toml` are copied to a
temporary folder, each mutant is written there (and the original put back after it), and pytest
runs in that folder, in a child forked from this process (which imported the third-party
packages once, never our code), with the copy's `src/` first on its path and on `PYTHONPATH`
(ahead of the editable install's). A mutant is killed when its tests fail, error or time out.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.mutants.operators import Mutant, mutants
from bench.mutants.targets import EQUIVALENT, TARGETS, Target

ROOT = Path(os.path.abspath(__file__)).parents[2]  # not resolved: a linked copy is its own root
PYTEST_ARGS = ("-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=")
SMOKE_PER_FILE = 3  # --smoke: the first mutants of the replay cache and the stream tokens
_PRELOAD = (
    "hypothesis",
    "pytest_asyncio",
    "anyio",
    "pydantic",
    "starlette.applications",
    "uvicorn",
    "httpx",
    "websockets",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "numpy",
    "soxr",
    "json5",
    "click",
    "rich.console",
    "prometheus_client",
    "openai",
    "mcp",
    "twilio.request_validator",
    "plivo",
)
_NOT_THE_COPY = 97  # a child's exit code: the tests imported our code from elsewhere
_stamp = int(time.time()) + 10**6  # the next mtime written (far from any real one)
SMOKE_FILES = ("src/voice_call/security/replay.py", "src/voice_call/security/stream_tokens.py")


@dataclass
class Outcome:
    target: Target
    total: int = 0
    killed: int = 0
    equivalent: int = 0
    seconds: float = 0.0
    survivors: list[Mutant] | None = None

    @property
    def survived(self) -> int:
        return self.total - self.killed - self.equivalent

    def rate(self) -> str:
        judged = self.total - self.equivalent
        return f"{100 * self.killed / judged:.1f}%" if judged else "-"


@contextmanager
def project_copy() -> Iterator[Path]:
    """A temporary copy of what the tests need; removed afterwards."""
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc")
    with tempfile.TemporaryDirectory(prefix="voicecall-mutants-") as tmp:
        copy = Path(tmp)
        shutil.copytree(ROOT / "src", copy / "src", ignore=ignore)
        shutil.copytree(ROOT / "tests", copy / "tests", ignore=ignore)
        shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
        yield copy


def preload() -> None:
    """Import the test run's third-party packages once, here: every forked run starts with them.
    Nothing of ours is imported, so each run imports the copy's (mutated) code afresh."""
    for name in ("pytest", *_PRELOAD):
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _pytest(
    copy: Path, tests: tuple[str, ...], timeout_s: float, quiet: bool = True
) -> tuple[bool, float]:
    """(passed, seconds) of the tests in `copy`, run in a forked child; a timeout fails."""
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            os.setpgid(0, 0)  # its own group, so a timeout ends whatever it started
            if quiet:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
            os.chdir(copy)
            os.environ["PYTHONPATH"] = str(copy / "src")  # for processes the tests start
            sys.path.insert(0, str(copy / "src"))
            _forget_ours()
            sys.dont_write_bytecode = False
            import pytest

            code = int(pytest.main([*PYTEST_ARGS, *tests]))
            ours = sys.modules.get("voice_call")
            if ours is not None and not str(ours.__file__).startswith(str(copy)):
                code = _NOT_THE_COPY
        finally:
            os._exit(code)
    deadline = started + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            if code == _NOT_THE_COPY:
                raise SystemExit(f"mutants: the tests did not import voice_call from {copy}")
            return code == 0, time.monotonic() - started
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return False, time.monotonic() - started
        time.sleep(0.01)


def _forget_ours() -> None:
    """Drop our modules the parent imported (`python -m bench` imports the other benchmarks,
    and with them the original code): the tests must import the copy's."""
    for name in list(sys.modules):
        if name.partition(".")[0] in ("voice_call", "tests"):
            del sys.modules[name]


def _write(path: Path, text: str) -> None:
    """Write `text` with an mtime no earlier write had: a `.pyc` is keyed by (mtime, size),
    so two mutants of one size written in one second could otherwise share a stale one."""
    global _stamp
    path.write_text(text, encoding="utf-8")
    _stamp += 1
    os.utime(path, (_stamp, _stamp))


def _baseline(copy: Path, target: Target) -> float:
    missing = [t for t in target.tests if not (copy / t).exists()]
    if missing:
        raise SystemExit(f"mutants: test files of {target.path} not found: {', '.join(missing)}")
    passed, seconds = _pytest(copy, target.tests, 900)
    if not passed:  # once more, showing why: a loaded machine can fail a timing assertion
        passed, seconds = _pytest(copy, target.tests, 900, quiet=False)
    if not passed:
        raise SystemExit(
            f"mutants: the tests of {target.path} fail without any mutant: fix them first "
            f"({' '.join(target.tests)})"
        )
    return seconds


def _chosen(target: Target, smoke: bool) -> list[Mutant]:
    source = (ROOT / target.path).read_text(encoding="utf-8")
    found = mutants(source, target.path, target.covers)
    if smoke:
        return found[:SMOKE_PER_FILE] if target.path in SMOKE_FILES else []
    return found


def run_target(copy: Path, target: Target, smoke: bool, progress: bool) -> Outcome | None:
    chosen = _chosen(target, smoke)
    if not chosen:
        return None
    if progress:
        print(f"{target.module}: {target.path}", file=sys.stderr, flush=True)
    outcome = Outcome(target, total=len(chosen), survivors=[])
    started = time.monotonic()
    timeout_s = max(20.0, 4 * _baseline(copy, target) + 10)
    path = copy / target.path
    original = path.read_text(encoding="utf-8")
    try:
        for mutant in chosen:
            if mutant.key in EQUIVALENT:
                outcome.equivalent += 1
                if progress:
                    print(f"  equivalent {mutant.describe()}", file=sys.stderr, flush=True)
                continue
            _write(path, mutant.apply(original))
            passed, _ = _pytest(copy, target.tests, timeout_s)
            if passed:
                assert outcome.survivors is not None
                outcome.survivors.append(mutant)
            else:
                outcome.killed += 1
            if progress:
                mark = "SURVIVED" if passed else "killed  "
                print(f"  {mark} {mutant.describe()}", file=sys.stderr, flush=True)
    finally:
        _write(path, original)
    outcome.seconds = time.monotonic() - started
    return outcome


def run(smoke: bool, module: str = "all", progress: bool = True) -> list[Outcome]:
    targets = [t for t in TARGETS if module in ("all", t.module)]
    results: list[Outcome] = []
    preload()
    with project_copy() as copy:
        for target in targets:
            outcome = run_target(copy, target, smoke, progress)
            if outcome is not None:
                results.append(outcome)
    if not smoke:
        _warn_stale(targets)
    return results


def _warn_stale(targets: list[Target]) -> None:
    """Name the equivalent-mutant entries of these files that match no mutant any more (the
    code changed): each needs a look, and its entry updating or removing."""
    paths = {t.path for t in targets}
    keys = {m.key for t in targets for m in _chosen(t, smoke=False)}
    for key in EQUIVALENT:
        if key.partition(":")[0] in paths and key not in keys:
            print(f"stale equivalent entry (no such mutant now): {key}", file=sys.stderr)
