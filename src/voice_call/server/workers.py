"""`voicecall serve --workers N`: N server processes on one machine sharing one port.

Each worker is a whole `voicecall serve` (a child process running the same command), a full
instance of the cluster on the shared Redis store, bound to the port with SO_REUSEPORT: the
kernel spreads new connections over the workers, and the cluster routes each call's events and
commands to the worker that owns it (cluster/). This process only supervises:

- it holds the port (bound, not listening: it gets no connections) so that port 0 is resolved
  once and nothing else takes the port while a worker restarts;
- it starts the first worker alone (a config or store error is then reported once), then the
  rest, and waits until each listens; then it names the server in server.json;
- a worker that dies is logged and started again (after a pause that grows while restarts keep
  failing at once);
- SIGTERM or SIGINT stops every worker gracefully (SIGTERM to each, SIGKILL after the grace).

Workers run in their own session, so a Ctrl-C at the terminal (or a signal to the process group)
reaches only this process, which then stops each worker once; a second signal would cut a
worker's graceful shutdown short. A worker whose supervisor is gone (killed with -9) stops by
itself (`orphan_guard`). A worker says it listens by writing a line on the pipe named by
`WORKER_ENV`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from voice_call.server.serve import GRACEFUL_SHUTDOWN_S, announce_server, forget_server

log = logging.getLogger("voice_call.server.workers")
WORKER_ENV = "VOICECALL_SERVE_WORKER"  # the fd of the pipe a worker reports "listening" on
MAX_WORKERS = 64
START_TIMEOUT_S = 60.0  # a worker that neither listens nor exits by then is stopped
STOP_TIMEOUT_S = GRACEFUL_SHUTDOWN_S + 10.0  # SIGTERM, then this long before SIGKILL
QUICK_DEATH_S = 5.0  # a worker dying sooner than this after its start backs off the restart
MAX_BACKOFF_S = 30.0


class WorkerFailed(Exception):
    """A worker exited while the server was starting; `code` is its exit status."""

    def __init__(self, code: int) -> None:
        super().__init__(f"a worker exited with status {code} while starting")
        self.code = code


def report_listening() -> None:
    """In a worker: tell the supervisor it listens (nothing when not started as a worker)."""
    raw = os.environ.pop(WORKER_ENV, "")
    if not raw.isdigit():
        return
    fd = int(raw)
    with contextlib.suppress(OSError):  # a supervisor gone or no longer waiting
        os.write(fd, b"listening\n")
    with contextlib.suppress(OSError):
        os.close(fd)


def is_worker() -> bool:
    return os.environ.get(WORKER_ENV, "").isdigit()


async def orphan_guard(supervisor: int, every_s: float = 1.0) -> None:
    """In a worker: stop gracefully, as SIGTERM does, once the supervisor `pid` is gone."""
    while True:  # polled: no event tells a child its parent died (short of prctl)
        await asyncio.sleep(every_s)
        if os.getppid() != supervisor:
            break
    log.warning("the supervising process (pid %d) is gone; stopping", supervisor)
    os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen[bytes]
    started: float
    ready_fd: int  # read end of its "listening" pipe; -1 once read or closed
    failures: int = 0  # restarts in a row that died at once


@dataclass
class Supervisor:
    command: Sequence[str]  # the worker's command line (`voicecall ... serve --port P`)
    count: int
    home: Path
    url: str
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    _workers: dict[int, Worker] = field(default_factory=dict)
    _due: dict[int, float] = field(default_factory=dict)  # index → when to restart it
    _stopping: bool = False

    def run(self, holder: socket.socket, ready: Callable[[], None]) -> int:
        """Start the workers, call `ready` once all listen, supervise until a stop signal.
        Returns the exit status (0 after a clean stop). Raises WorkerFailed at start."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        old_wakeup = signal.set_wakeup_fd(wake_w)
        try:
            self._start_all()
            announce_server(self.home, self.url)
            ready()
            self._supervise(wake_r)
            return 0
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._stop_all()
            forget_server(self.home)
            holder.close()
            os.close(wake_r)
            os.close(wake_w)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def _start_all(self) -> None:
        self._wait_listening([self._spawn(0)])  # alone first: one error message, not N
        self._wait_listening([self._spawn(n) for n in range(1, self.count)])

    def _spawn(self, index: int, failures: int = 0) -> Worker:
        ready_r, ready_w = os.pipe()
        env = {**self.env, WORKER_ENV: str(ready_w)}
        try:
            proc = subprocess.Popen(
                list(self.command), env=env, pass_fds=(ready_w,), start_new_session=True
            )
        finally:
            os.close(ready_w)
        worker = Worker(index, proc, time.monotonic(), ready_r, failures)
        self._workers[index] = worker
        log.info("worker %d started (pid %d)", index + 1, proc.pid)
        return worker

    def _wait_listening(self, workers: list[Worker]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with selectors.DefaultSelector() as selector:
            for worker in workers:
                selector.register(worker.ready_fd, selectors.EVENT_READ, worker)
            waiting = len(workers)
            while waiting:
                if self._stopping:
                    raise KeyboardInterrupt
                left = deadline - time.monotonic()
                if left <= 0:
                    log.error("a worker did not listen within %g s; stopping", START_TIMEOUT_S)
                    raise WorkerFailed(1)
                for key, _ in selector.select(min(left, 0.5)):
                    worker = key.data
                    selector.unregister(key.fd)
                    waiting -= 1
                    said = os.read(worker.ready_fd, 64)
                    self._close_ready(worker)
                    if not said:  # the pipe closed without a word: it exited
                        raise WorkerFailed(worker.proc.wait())

    def _supervise(self, wake_r: int) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(wake_r, selectors.EVENT_READ)
            while not self._stopping:
                now = time.monotonic()
                timeout = min((due - now for due in self._due.values()), default=1.0)
                for key, _ in selector.select(max(0.0, min(timeout, 1.0))):
                    with contextlib.suppress(BlockingIOError):
                        os.read(key.fd, 512)  # a signal arrived: the loop condition sees it
                if not self._stopping:
                    self._reap()
                    self._restart_due()

    def _reap(self) -> None:
        for index, worker in list(self._workers.items()):
            code = worker.proc.poll()
            if code is None or index in self._due:
                continue
            self._close_ready(worker)
            quick = time.monotonic() - worker.started < QUICK_DEATH_S
            failures = worker.failures + 1 if quick else 0
            delay = min(MAX_BACKOFF_S, 2.0 ** (failures - 1)) if failures else 0.0
            log.warning(
                "worker %d (pid %d) exited with status %s; starting it again%s",
                index + 1,
                worker.proc.pid,
                code,
                f" in {delay:g} s" if delay else "",
            )
            worker.failures = failures
            self._due[index] = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for index, due in list(self._due.items()):
            if due <= now:
                del self._due[index]
                self._spawn(index, self._workers[index].failures)

    def _stop_all(self) -> None:
        live = [w for w in self._workers.values() if w.proc.poll() is None]
        for worker in live:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in live:
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop in time; killing it", worker.index + 1)
                worker.proc.kill()
                worker.proc.wait()
        for worker in self._workers.values():
            self._close_ready(worker)

    @staticmethod
    def _close_ready(worker: Worker) -> None:
        if worker.ready_fd >= 0:
            os.close(worker.ready_fd)
            worker.ready_fd = -1
