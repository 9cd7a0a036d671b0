"""Transfer targets for the emulated carriers: the person a caller is handed to.

Each emulator (and the mock carrier) keeps one `TransferTargets`: how each target number or SIP
URI behaves (answers, is busy, does not answer, fails) and a log of every transfer it carried —
who was connected to whom, and what the target heard before the bridge (a warm transfer's
summary, a whisper). Tests script the targets and read the log; nothing here is carrier-shaped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

TargetOutcome = Literal["answer", "busy", "no-answer", "failed"]


@dataclass(frozen=True)
class TargetScript:
    outcome: TargetOutcome = "answer"
    answer_delay_ms: int = 100  # ringing before the target picks up (or is found busy)
    talk_ms: int = 300  # how long the target talks with the caller before hanging up


@dataclass
class Connection:
    """One transfer as the carrier saw it."""

    caller: str  # the carrier's id of the call being transferred
    target: str
    mode: str  # "cold" | "warm"
    status: str = "dialing"  # then bridged | busy | no-answer | failed | completed
    heard: list[str] = field(default_factory=list)  # what the target heard before the bridge
    announced: list[str] = field(default_factory=list)  # what the caller heard first
    at: float = field(default_factory=time.time)
    bridged_at: float | None = None


class TransferTargets:
    def __init__(self) -> None:
        self.scripts: dict[str, TargetScript] = {}
        self.default = TargetScript()
        self.connections: list[Connection] = []

    def set(self, target: str, script: TargetScript) -> None:
        self.scripts[target] = script

    def script(self, target: str) -> TargetScript:
        return self.scripts.get(target, self.default)

    def open(self, caller: str, target: str, mode: str) -> Connection:
        connection = Connection(caller=caller, target=target, mode=mode)
        self.connections.append(connection)
        return connection

    def bridged(self, connection: Connection) -> None:
        connection.status = "bridged"
        connection.bridged_at = time.time()

    def to(self, target: str) -> list[Connection]:
        return [c for c in self.connections if c.target == target]
