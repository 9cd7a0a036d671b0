"""A simulated person on the other end of the line, shared by the mock provider and emulators.

It follows a script: answer after N ms (or be busy, not answer, go to voicemail, fail), say the
next scripted line each time it is listened to, optionally hang up after N lines, and keep a log
of everything it heard so tests can assert on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CalleeScript:
    outcome: str = "answer"  # answer | busy | no-answer | voicemail | failed | machine | fax
    answer_delay_ms: int = 300
    replies: tuple[str, ...] = ()
    reply_delay_ms: int = 400
    hangup_after_turns: int | None = None  # hang up on hearing the bot after this many lines
    silent: bool = False
    # outcome "machine": an answering machine's greeting this long, then the beep (sim/machine.py)
    greeting_ms: int = 3000


@dataclass
class SimulatedCallee:
    script: CalleeScript
    heard: list[str] = field(default_factory=list)
    heard_at: list[float] = field(default_factory=list)  # time.time() as each was heard whole
    digits: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    hung_up: bool = False

    def hear(self, text: str) -> bool:
        """Record what the bot said; True when the callee now hangs up."""
        self.heard.append(text)
        self.heard_at.append(time.time())
        limit = self.script.hangup_after_turns
        return limit is not None and len(self.said) >= limit

    def next_line(self) -> str | None:
        """The line to say when listened to, or None to stay silent."""
        machine = self.script.outcome in ("machine", "fax")  # never talks to the bot
        if self.script.silent or machine or self.hung_up:
            return None
        if len(self.said) >= len(self.script.replies):
            return None
        line = self.script.replies[len(self.said)]
        self.said.append(line)
        return line
