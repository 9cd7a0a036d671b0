"""`ManagerControl`: the `CallControl` a realtime voice bridge gets (realtime/tools.py), over
the manager — the only writer of call state — the configured responder and the hook URL.

What changes the call (hang up, speak, digits) goes through `CallActions`: the manager itself on
one instance; in a cluster the router (runtime.py), which runs each at the call's owner — under
its per-call lock, disarming its timers and running its end listeners — since the bridge runs
where the stream is held, which may be another instance.

- `end_call`: the manager hangs up (the bridge calls it once the goodbye has played).
- `consult`: the responder (`responder.provider`: openai, hook, echo) answers the question as if
  the caller had just asked it, with the call's transcript and its session's earlier calls.
- `send_dtmf`: the manager's dtmf command (carrier DTMF, or tones on the stream).
- `call_hook_tool`: `POST responder.url` with `{"callId", "tool", "arguments"}` (and
  `responder.headers`); the JSON answer is the tool's result. The config check allows custom
  tools only with the hook responder.
- `end_with_apology`: the call's stream is let go and closed first, so the apology goes out in
  the carrier's own voice (and the stream's end does not end the call as a dropped stream), then
  the manager hangs up with reason error and the error on the record — once the apology had
  time to be said: a carrier that never reports when its speech ended (Twilio's `<Say>`) would
  otherwise be hung up on mid-sentence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from voice_call.agent.responders.base import ReplyContext
from voice_call.config import Config
from voice_call.errors import VoiceCallError
from voice_call.models import CallState, EndReason, Speaker, TranscriptEntry
from voice_call.realtime.tools import ToolError

if TYPE_CHECKING:
    from voice_call.manager.manager import CallManager
    from voice_call.media.registry import MediaSessions

log = logging.getLogger("voice_call.realtime.control")

HOOK_TIMEOUT_S = 20.0
SAY_SECONDS_PER_CHAR = 0.075  # a carrier voice at ~130 words a minute: slower than most
MAX_APOLOGY_WAIT_S = 20.0
MAX_HOOK_ANSWER_BYTES = 64 * 1024


class CallActions(Protocol):
    """The call's state changes, applied where the call is owned (the manager's signatures)."""

    async def end(
        self, call_id: str, reason: CallState, /, *, error: str | None = None
    ) -> None: ...

    async def speak(self, call_id: str, message: str, /) -> None: ...

    async def send_dtmf(self, call_id: str, digits: str, /) -> None: ...


class ManagerControl:
    def __init__(
        self,
        config: Config,
        manager: CallManager,
        media: MediaSessions | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        actions: CallActions | None = None,
    ) -> None:
        """`actions`: where the call's state changes run (default: `manager`, one instance)."""
        self.config = config
        self.manager = manager
        self.media = media
        self.actions: CallActions = actions if actions is not None else manager
        self._http = http

    async def end_call(self, call_id: str, reason: EndReason) -> None:
        await self.actions.end(call_id, reason)

    async def consult(self, call_id: str, question: str) -> str:
        responder = self.manager.responder
        if responder is None:
            raise ToolError("no assistant is configured to consult")
        record = await self.manager.get(call_id)
        if record is None:
            raise ToolError("the call is gone")
        asked = record.model_copy(deep=True)
        asked.transcript.append(
            TranscriptEntry(at=time.time(), speaker=Speaker.USER, text=question)
        )
        context = ReplyContext(load_history=self.manager.replies.history(record))
        parts = [part.strip() async for part in responder.stream(asked, context)]
        answer = " ".join(part for part in parts if part)
        if not answer:
            raise ToolError("the assistant had no answer")
        return answer

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        try:
            await self.actions.send_dtmf(call_id, digits)
        except VoiceCallError as exc:
            raise ToolError(exc.message) from None

    async def call_hook_tool(self, call_id: str, name: str, arguments: dict[str, Any]) -> Any:
        url = self.config.responder.url
        if url is None:
            raise ToolError(f"{name} has no hook to answer it")
        body = {"callId": call_id, "tool": name, "arguments": arguments}
        headers = {**self.config.responder.headers, "Accept": "application/json"}
        try:
            response = await self._client().post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ToolError(f"could not reach the tool's hook: {type(exc).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise ToolError(f"the tool's hook answered HTTP {response.status_code}")
        if len(response.content) > MAX_HOOK_ANSWER_BYTES:
            raise ToolError("the tool's hook answered more than 64 KiB")
        try:
            return response.json()
        except ValueError:
            raise ToolError("the tool's hook answered something that is not JSON") from None

    async def end_with_apology(self, call_id: str, apology: str, error: str) -> None:
        # The stream is held here (the bridge runs where it is), so it is let go here.
        session = self.media.let_go(call_id) if self.media is not None else None
        if session is not None:
            await session.close()  # the carrier's own voice from here on
        started = time.monotonic()
        try:
            await self.actions.speak(call_id, apology)
        except VoiceCallError as exc:
            log.info("call %s: the apology was not said: %s", call_id, exc.message)
        else:
            await self._let_it_be_said(apology, started)
        await self.actions.end(call_id, CallState.ERROR, error=error)
        if self.media is not None and self.actions is not self.manager:
            # Ended at another instance (its owner), whose end listeners ran there, not here:
            # this instance forgets the call it let go (and any STT warmed for it) itself.
            self.media.call_ended(call_id)

    async def _let_it_be_said(self, text: str, started: float) -> None:
        """Give the carrier's voice the time `text` takes to say, where the carrier never tells
        us when it finished (its speak returned once it took the text)."""
        if self.manager.provider.reports_playback_end:
            return
        needed = min(len(text) * SAY_SECONDS_PER_CHAR + 0.5, MAX_APOLOGY_WAIT_S)
        left = needed - (time.monotonic() - started)
        if left > 0:
            await asyncio.sleep(left)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=HOOK_TIMEOUT_S)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
