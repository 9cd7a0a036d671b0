"""The `echo` responder: repeats the caller's last line. No keys: for the demo, offline work
and tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

from voice_call.agent.responders.base import ReplyContext, last_user_line
from voice_call.models import CallRecord


class EchoResponder:
    async def stream(self, call: CallRecord, context: ReplyContext) -> AsyncIterator[str]:
        last = last_user_line(call)
        if last:
            context.first_token()
            yield f"You said: {last}"
