"""`voicecall demo --realtime`: one realtime voice call, end to end, in about fifteen seconds.

Everything runs in this process on loopback, with no keys: the Twilio emulator plays the carrier
and the callee (who talks over the Media Stream in synthetic speech), a fake model service plays
OpenAI Realtime (`sim.openai`, conversation mode) or Gemini Live (`sim.google`), and the real
Runtime and server sit between them as `voicecall serve` does with `realtime.enabled`. The fakes
cannot recognise speech, so they are told the words of each line the callee says, as the
end-to-end tests do; everything else — VAD, audio, barge-in, tool calls — goes over the wire.

The call: the model says the greeting word for word, answers a question, is cut off by the
callee half-way through a long answer (the carrier's buffer is cleared and the model told how
much was heard), answers the interruption with a goodbye, and calls `end_call` when the callee
says bye. What the demo itself makes the callee do is printed as `[demo] …` lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from voice_call.cli.i18n import _

if TYPE_CHECKING:
    from rich.console import Console

    from voice_call.client.rpc import RpcClient
    from voice_call.realtime.bridge import RealtimeSession
    from voice_call.runtime import Runtime
    from voice_call.sim.callee import CalleeScript
    from voice_call.sim.common import EmulatedCall
    from voice_call.sim.twilio import TwilioEmulator

ModelName = Literal["openai", "google"]
MODELS: tuple[ModelName, ...] = ("openai", "google")
LABELS = {"openai": "OpenAI Realtime", "google": "Gemini Live"}
DEMO_TIMEOUT_S = 40.0

ACCOUNT_SID = "AC" + "de" * 16
AUTH_TOKEN = "demo-twilio-auth-token"
FROM_NUMBER = "+15550001000"
TO_NUMBER = "+15555550123"
FAKE_KEY = "demo-key"  # the only key the fake model accepts; never a real one

GREETING = "Hi, it's the clinic."
QUESTION = "Open Saturday?"
ANSWER = "Yes, nine to noon."
FOLLOW_UP = "And weekdays?"
LONG_ANSWER = "On weekdays we open at eight and close at six, and late on Thursdays."
BARGE_IN = "Just Monday?"
GOODBYE = "Eight to six. Bye now!"
LAST_WORD = "Bye!"
BARGE_AFTER_MS = 1000  # of the long answer heard before the callee cuts in

# The fake model's own share of each turn: silence before it ends the caller's turn, then the
# wait before its first audio. Voice-to-voice less these is the bridge, sockets and carrier.
SILENCE_MS = 300
FIRST_AUDIO_MS = 150


@dataclass
class DemoOutcome:
    """What the demo saw, printed at the end (or as JSON with `--json`)."""

    model: ModelName
    call_id: str = ""
    end_reason: str | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    voice_to_voice_ms: list[float] = field(default_factory=list)
    barge_ins: int = 0
    tools_called: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    record: dict[str, Any] = field(default_factory=dict)  # voicecall.status, full

    @property
    def ok(self) -> bool:
        return self.end_reason == "hangup-bot"

    def wire(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "model": self.model,
            "callId": self.call_id,
            "endReason": self.end_reason,
            "transcript": self.transcript,
            "voiceToVoiceMs": self.voice_to_voice_ms,
            "fakeModelDelayMs": {"silence": SILENCE_MS, "firstAudio": FIRST_AUDIO_MS},
            "bargeIns": self.barge_ins,
            "toolsCalled": self.tools_called,
            "elapsedS": round(self.elapsed_s, 2),
        }


async def run_realtime_demo(console: Console | None, model: ModelName) -> DemoOutcome:
    """Run the demo; `console` None prints nothing (the `--json` form). Raises TimeoutError
    when the call never ends."""
    outcome = DemoOutcome(model)
    started = time.monotonic()
    async with asyncio.timeout(DEMO_TIMEOUT_S):
        await _demo(console, outcome)
    outcome.elapsed_s = time.monotonic() - started
    return outcome


async def _demo(console: Console | None, outcome: DemoOutcome) -> None:
    from voice_call.client.rpc import RpcClient
    from voice_call.config import parse_config
    from voice_call.runtime import Runtime
    from voice_call.server.serve import start_background
    from voice_call.sim.twilio import TwilioEmulator
    from voice_call.sim.voice import synthetic_speech

    port = _free_port()  # publicUrl must be known before the server binds
    webhook = f"http://127.0.0.1:{port}/voice/webhook"
    async with _fake_model(outcome.model) as fake:
        emulator = TwilioEmulator(
            ACCOUNT_SID,
            AUTH_TOKEN,
            script=_callee_script(),
            voice_url=webhook,
            status_callback=webhook,
            speech=synthetic_speech,  # no espeak-ng needed
        )
        async with emulator:
            fake.bind_callee(emulator)
            # env={}: nothing from the environment (keys, a real carrier) gets in
            config = parse_config(_config(emulator.url, port, fake.settings), env={})
            with tempfile.TemporaryDirectory(prefix="voicecall-demo-") as folder:
                runtime = Runtime(config, Path(folder))
                server = await start_background(runtime)
                try:
                    model = LABELS[outcome.model]
                    title = _("Twilio emulator, fake {model} model, server on {url}").format(
                        model=model, url=server.url
                    )
                    _say(console, f"[bold]voicecall demo --realtime[/] — {title}")
                    client = RpcClient(server.url, runtime.rpc_token)
                    await _call(console, client, runtime, emulator, outcome)
                finally:
                    await server.stop()
        outcome.tools_called = fake.tools_called()


async def _call(
    console: Console | None,
    client: RpcClient,
    runtime: Runtime,
    emulator: TwilioEmulator,
    outcome: DemoOutcome,
) -> None:
    _say(
        console,
        _("Calling {number}; the model answers with its own voice…").format(number=TO_NUMBER),
    )
    result = await client.call(
        "voicecall.initiate", {"to": TO_NUMBER, "message": GREETING, "mode": "conversation"}
    )
    outcome.call_id = str(result["callId"])
    narrator = _Narrator(console, runtime, outcome)
    callee = asyncio.create_task(_drive_callee(console, emulator))
    try:
        # since=0 replays the call's log from its start, so nothing said before is missed
        async with contextlib.aclosing(client.events(since=0, call_id=outcome.call_id)) as events:
            await narrator.follow(events)
    finally:
        callee.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await callee
    status = await client.call("voicecall.status", {"callId": outcome.call_id, "full": True})
    call = status.get("call") or {}
    outcome.end_reason = call.get("endReason")
    outcome.transcript = [
        {"speaker": e.get("speaker"), "text": e.get("text")} for e in call.get("transcript") or []
    ]
    outcome.record = call
    # each answered turn's voice-to-voice, as `voicecall latency` shows it
    outcome.voice_to_voice_ms = [
        float(turn["voiceToVoiceMs"])
        for turn in call.get("latency") or []
        if turn.get("voiceToVoiceMs") is not None
    ]
    if narrator.session is not None:
        outcome.barge_ins = narrator.session.barge_ins


class _Narrator:
    """Prints the call as its event log goes by, until it ends."""

    def __init__(self, console: Console | None, runtime: Runtime, outcome: DemoOutcome) -> None:
        self.console = console
        self.runtime = runtime
        self.outcome = outcome
        self.session: RealtimeSession | None = None
        self.start: float | None = None

    async def follow(self, events: AsyncIterator[dict[str, Any]]) -> None:
        from voice_call.errors import Unavailable

        async for event in events:
            self._grab_session()
            if self._show(event):
                return
        raise Unavailable(_("the event stream ended before the call did"))

    def _grab_session(self) -> None:
        """Keep the call's bridge while it lives: its barge-in count is read after the call."""
        from voice_call.realtime.bridge import RealtimeSession

        if self.session is None:
            session = self.runtime.media.get(self.outcome.call_id)
            if isinstance(session, RealtimeSession):
                self.session = session

    def _show(self, event: Mapping[str, Any]) -> bool:
        """Print one event; True once the call has ended."""
        at = float(event.get("at") or 0.0)
        self.start = at if self.start is None else self.start
        kind = event.get("type")
        data: Mapping[str, Any] = event.get("data") or {}
        stamp = f"[dim][{at - self.start:5.2f}s][/] "
        line = self._line(kind, data)
        if line is not None:
            _say(self.console, stamp + line)
        return kind == "call.ended"

    def _line(self, kind: Any, data: Mapping[str, Any]) -> str | None:
        from rich.markup import escape

        text = escape(str(data.get("transcript") or data.get("text") or ""))
        model = LABELS[self.outcome.model]
        if kind == "call.ringing":
            return "[cyan]" + _("ringing…") + "[/]"
        if kind == "call.answered":
            return "[green]" + _("answered") + "[/]"
        if kind == "call.stream-started":
            bridged = _("media stream open: the line is bridged to the fake {model} model")
            return f"[dim]{bridged.format(model=model)}[/]"
        if kind == "bot.spoke":
            said = _("(the greeting, said word for word)")
            return f"{_model()}  {text}  [dim]{said}[/]"
        if kind == "call.speech" and data.get("isFinal", True) and text:
            return "[bold blue]" + _("caller:") + f"[/] {text}"
        if kind == "call.speaking":
            return self._answering(data)
        if kind == "call.replied":
            return self._replied(text, data)
        if kind == "bot.hangup":
            return (
                "[dim]"
                + _("the model called end_call: hanging up now its goodbye has played")
                + "[/]"
            )
        if kind == "call.ended":
            ended = _("call ended: {reason}").format(reason=escape(str(data.get("reason") or "")))
            return f"[bold red]{ended}[/]"
        return None

    def _answering(self, data: Mapping[str, Any]) -> str | None:
        ms = data.get("voiceToVoiceMs")
        if not isinstance(ms, int | float):
            return None  # the greeting (nobody had spoken yet), or a second part of an answer
        answering = _("model answering — voice-to-voice {ms} ms").format(ms=f"{ms:.0f}")
        return f"[dim]{answering}[/]"

    def _replied(self, text: str, data: Mapping[str, Any]) -> str:
        if text and LONG_ANSWER.startswith(text) and text != LONG_ANSWER:
            heard = data.get("durationMs")
            told = (
                _("the model was told {ms} ms were heard").format(ms=heard)
                if self.outcome.model == "openai"
                else _("Gemini stopped on its own (it takes no truncation)")
            )
            cut = _("(cut: the caller talked over it; the carrier's buffer was cleared, {how})")
            return f"{_model()}  {text}…  [dim]{cut.format(how=told)}[/]"
        return f"{_model()}  {text}"


def _model() -> str:
    """The narration's speaker label for the model's lines, in rich markup."""
    return "[bold magenta]" + _("model:") + "[/]"


async def _drive_callee(console: Console | None, emulator: TwilioEmulator) -> None:
    """The callee's unscripted moves: cut into the long answer, then say bye once the model's
    answer to that has played. (Its first two lines are the emulator's own script.)"""
    from rich.markup import escape

    call = await _until(lambda: next(iter(emulator.calls.values()), None))
    await _until(lambda: len(call.callee.heard) >= 2)  # the greeting and the first answer
    start = _played_bytes(call)
    await _until(lambda: _played_bytes(call) - start >= BARGE_AFTER_MS * 8 or None)
    talks = _("[demo] the callee talks over the answer: “{line}”").format(line=BARGE_IN)
    _say(console, f"[dim]{escape(talks)}[/]")
    await call.extra["stream"].barge_in(BARGE_IN)
    await _until(lambda: len(call.callee.heard) >= 4)  # the cut answer, and the next one
    says = _("[demo] the callee says “{line}”").format(line=LAST_WORD)
    _say(console, f"[dim]{escape(says)}[/]")
    await call.extra["stream"].barge_in(LAST_WORD)


def _played_bytes(call: EmulatedCall) -> int:
    """µ-law bytes of our audio the callee has heard (8 per millisecond)."""
    return len(call.extra.get("audio_in", b""))


async def _until(probe: Callable[[], Any]) -> Any:
    """Poll `probe` every frame until it returns something truthy; return that. (The
    emulator's callee state has no event to wait on; a demo can afford a 20 ms poll.)"""
    while not (found := probe()):  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    return found


def print_figures(console: Console, outcome: DemoOutcome) -> None:
    """The per-turn voice-to-voice figures, the fake model's share of them, and the rest."""
    figures = ", ".join(f"{ms:.0f}" for ms in outcome.voice_to_voice_ms) or _("none")
    own = SILENCE_MS + FIRST_AUDIO_MS
    ours = ", ".join(f"{ms - own:.0f}" for ms in outcome.voice_to_voice_ms) or _("none")
    lines = [
        _("  voice-to-voice: {figures} ms per turn").format(figures=figures),
        _("    (the caller's last speech frame → the answer's first frame to the carrier)"),
        _(
            "    the fake model's share: {own} ms ({silence} ms of silence ends a turn, "
            "{first} ms to first audio)"
        ).format(own=own, silence=SILENCE_MS, first=FIRST_AUDIO_MS),
        _("    the rest (bridge, sockets, carrier emulator): {ms} ms").format(ms=ours),
    ]
    for line in lines:
        console.print(line, markup=False)
    tools = ", ".join(outcome.tools_called) or _("none")
    console.print(
        _("  barge-ins: {count}; tools the model called: {tools}").format(
            count=outcome.barge_ins, tools=tools
        )
    )


def _say(console: Console | None, markup: str) -> None:
    if console is not None:
        console.print(markup, highlight=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _callee_script() -> CalleeScript:
    from voice_call.sim.callee import CalleeScript

    return CalleeScript(replies=(QUESTION, FOLLOW_UP), answer_delay_ms=100, reply_delay_ms=100)


def _config(carrier_url: str, port: int, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "provider": "twilio",
        "fromNumber": FROM_NUMBER,
        "twilio": {"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "apiBaseUrl": carrier_url},
        "serve": {"port": port, "bind": "127.0.0.1"},
        "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
        "outbound": {"notifyHangupDelaySec": 0},
        "staleCallReaperSeconds": 0,
        "inboundPolicy": "allowlist",  # realtime needs one; nobody calls in here
        "maxConcurrentCalls": 1,
        "realtime": {"enabled": True, **model},
    }


# ---- the fake model services


class _Fake(ABC):
    """A running fake model: the `realtime` settings that point our server at it."""

    settings: dict[str, Any]

    @abstractmethod
    def service(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Serve the fake on a loopback port while the context is open."""

    def bind_callee(self, emulator: TwilioEmulator) -> None:  # noqa: B027 - optional hook
        """Learn where the callee's words are logged (the fake cannot hear them)."""

    @abstractmethod
    def tools_called(self) -> list[str]:
        """The functions the model called, in order."""


@asynccontextmanager
async def _fake_model(model: ModelName) -> AsyncIterator[_Fake]:
    fake: _Fake = _FakeGemini() if model == "google" else _FakeOpenAI()
    async with fake.service():
        yield fake


class _FakeOpenAI(_Fake):
    def __init__(self) -> None:
        from voice_call.sim.openai import FakeOpenAI
        from voice_call.sim.openai.conversation import ConversationScript, ToolCall

        self.lines: list[str] = []  # the callee's lines so far, as the emulator logs them
        self.given = 0
        self.emulator: TwilioEmulator | None = None
        script = ConversationScript(
            [ANSWER, LONG_ANSWER, GOODBYE, ToolCall("end_call")],
            caller_source=self._next_line,
            first_audio_ms=FIRST_AUDIO_MS,
            per_chunk_ms=20,
            first_delta_ms=20,
            per_word_ms=10,
        )
        self.fake = FakeOpenAI(FAKE_KEY, conversation=script)

    @asynccontextmanager
    async def service(self) -> AsyncIterator[None]:
        async with self.fake:
            self.settings = {
                "providers": {
                    "openai": {
                        "apiKey": FAKE_KEY,
                        "url": self.fake.conversation_url,
                        "silenceDurationMs": SILENCE_MS,
                        "vadThreshold": 0.3,
                    }
                }
            }
            yield

    def bind_callee(self, emulator: TwilioEmulator) -> None:
        self.emulator = emulator

    def _next_line(self, _turn: Any) -> str:
        """The words of the caller's next turn: the callee's next line, each given once."""
        calls = self.emulator.calls.values() if self.emulator is not None else ()
        said = [line for call in calls for line in call.extra.get("said_via_stream", [])]
        if self.given >= len(said):
            return ""  # a stretch of noise, not a line
        self.given += 1
        return str(said[self.given - 1])

    def tools_called(self) -> list[str]:
        return [
            str(event.get("name"))
            for session in self.fake.conversations
            for event in session.server_events("response.function_call_arguments.done")
        ]


class _FakeGemini(_Fake):
    def __init__(self) -> None:
        from voice_call.sim.google import FakeGeminiLive, FunctionCall, LiveScript, Reply

        # Gemini's fake takes the caller's words in order (the demo's own lines included)
        script = LiveScript(
            caller=[QUESTION, FOLLOW_UP, BARGE_IN, LAST_WORD],
            replies=[ANSWER, LONG_ANSWER, GOODBYE, Reply(call=FunctionCall("end_call"))],
            first_audio_ms=FIRST_AUDIO_MS,
        )
        self.fake = FakeGeminiLive(FAKE_KEY, script=script)

    @asynccontextmanager
    async def service(self) -> AsyncIterator[None]:
        async with self.fake:
            google = {"apiKey": FAKE_KEY, "url": self.fake.url, "silenceDurationMs": SILENCE_MS}
            self.settings = {"provider": "google", "providers": {"google": google}}
            yield

    def tools_called(self) -> list[str]:
        return [
            str(call.get("name"))
            for session in self.fake.sessions
            for message in session.sent
            for call in (message.get("toolCall") or {}).get("functionCalls") or []
        ]
