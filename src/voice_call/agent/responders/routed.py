"""One responder per number: `numbers["+1555…"].responder` answers that number's inbound calls,
the top-level `responder` every other call. All are built once at start (so a route's missing
API key fails there), and each turn goes to the one its call's route chose."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from voice_call.agent.responders.base import ReplyContext, Responder
from voice_call.models import CallRecord, Direction
from voice_call.numbers import screened_key


class RoutedResponder:
    def __init__(self, default: Responder | None, by_route: Mapping[str, Responder | None]) -> None:
        """`by_route`: the responder of each route key that has its own (None: stays quiet)."""
        self.default = default
        self.by_route = dict(by_route)

    def pick(self, call: CallRecord) -> Responder | None:
        """The responder of the route the inbound screen chose for `call`, else the default."""
        key = screened_key(call) if call.direction == Direction.INBOUND else None
        return self.default if key is None else self.by_route.get(key, self.default)

    async def stream(self, call: CallRecord, context: ReplyContext) -> AsyncIterator[str]:
        responder = self.pick(call)
        if responder is None:
            return  # a route (or the top level) with provider "none": no reply
        async for sentence in responder.stream(call, context):
            yield sentence

    async def aclose(self) -> None:
        unique = {id(r): r for r in (self.default, *self.by_route.values()) if r is not None}
        for responder in unique.values():
            aclose = getattr(responder, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
