"""Per-call named timers on an injectable clock (max duration, notify hang-up, turn timeout)."""

from __future__ import annotations

from collections.abc import Callable

from voice_call.clock import Clock, Timer


class CallTimers:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._timers: dict[tuple[str, str], Timer] = {}

    def set(self, call_id: str, name: str, delay: float, callback: Callable[[], object]) -> None:
        """(Re)arm one timer; an earlier timer of the same name for the call is replaced."""
        self.cancel(call_id, name)
        key = (call_id, name)

        def fire() -> None:
            self._timers.pop(key, None)
            callback()

        self._timers[key] = self._clock.call_later(delay, fire)

    def cancel(self, call_id: str, name: str) -> None:
        timer = self._timers.pop((call_id, name), None)
        if timer is not None:
            timer.cancel()

    def cancel_all(self, call_id: str | None = None) -> None:
        for key in [k for k in self._timers if call_id is None or k[0] == call_id]:
            self._timers.pop(key).cancel()

    def armed(self, call_id: str, name: str) -> bool:
        return (call_id, name) in self._timers
