"""The `echo` responder: repeats the caller's last line, in the call's language ("You said:
…", 「您說：…」 for zh-TW: languages.py). No keys: for the demo, offline work and tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

from voice_call.agent.prompt import call_language
from voice_call.agent.responders.base import ReplyContext, last_user_line
from voice_call.config import Config
from voice_call.languages import LANGUAGES, lookup
from voice_call.models import CallRecord


class EchoResponder:
    def __init__(self, config: Config | None = None) -> None:
        self.config = config

    async def stream(self, call: CallRecord, context: ReplyContext) -> AsyncIterator[str]:
        last = last_user_line(call)
        if last:
            context.first_token()
            yield self._template(call).format(text=last)

    def _template(self, call: CallRecord) -> str:
        language = lookup(call_language(self.config, call)) if self.config else None
        return (language or LANGUAGES["en-US"]).you_said
