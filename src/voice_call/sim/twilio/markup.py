"""TwiML for the Twilio emulator: parse a document into verbs, then run them against one call.

Parsing follows Twilio (docs/carriers.md §1.3): XML that does not parse, or a root other than
`<Response>`, is error 12100 "Document parse failure"; the emulator turns that into an
application error that ends the call. `<Dial>` to one `<Number>` or `<Sip>` (or a bare number)
is modelled against the emulator's transfer targets (`sim/transfer_target.py`): its `action`
gets `DialCallStatus`, a `<Number url>` whisper is run for the called party before the bridge,
and `<Number statusCallback>` reports the called party's progress. Verbs it does not model
(Record, Start, Enqueue, a `<Conference>` dial, ...) are noted on the call and skipped.

Running a document yields either `Fetch` (ask the app for the next document: a Gather action,
a Redirect, a Connect action) or `Ended` (the call is over). The per-call `CallHost` supplies
time, the callee and the media stream, so this module holds TwiML semantics only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urljoin, urlsplit

# How long the emulated carrier takes to speak or play, so turn timing resembles a real call.
SPEECH_SECONDS_PER_CHAR = 0.065  # about 150 words a minute
PLAY_SECONDS = 2.0  # [M] the emulator never downloads <Play> audio, so it assumes a short clip
MAX_LOOPS = 100  # loop="0" means "until something else happens"; bound it
DEFAULT_CONFIDENCE = "0.9"  # [M] a plausible Confidence for a clean scripted utterance


class TwimlError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Say:
    text: str
    loop: int = 1


@dataclass(frozen=True)
class Play:
    url: str
    loop: int = 1
    digits: str = ""


@dataclass(frozen=True)
class Pause:
    length: float = 1.0


@dataclass(frozen=True)
class Gather:
    input: frozenset[str] = frozenset({"dtmf"})
    action: str | None = None
    method: str = "POST"
    timeout: float = 5.0
    num_digits: int | None = None
    finish_on_key: str = "#"
    action_on_empty_result: bool = False
    prompts: tuple[Say | Play | Pause, ...] = ()


@dataclass(frozen=True)
class Hangup:
    pass


@dataclass(frozen=True)
class Redirect:
    url: str
    method: str = "POST"


@dataclass(frozen=True)
class Reject:
    reason: str = "rejected"


@dataclass(frozen=True)
class Stream:
    url: str
    name: str | None = None
    track: str = "inbound_track"
    status_callback: str | None = None
    status_callback_method: str = "POST"
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Connect:
    stream: Stream | None
    action: str | None = None
    method: str = "POST"


@dataclass(frozen=True)
class DialTarget:
    """One `<Number>` / `<Sip>` of a `<Dial>` (or the bare number in its text)."""

    address: str
    url: str | None = None  # TwiML for the called party before the bridge (a whisper)
    method: str = "POST"
    status_callback: str | None = None
    status_callback_events: frozenset[str] = frozenset({"completed"})
    status_callback_method: str = "POST"


@dataclass(frozen=True)
class Dial:
    targets: tuple[DialTarget, ...]
    action: str | None = None
    method: str = "POST"
    timeout: float = 30.0
    caller_id: str | None = None


@dataclass(frozen=True)
class DialOutcome:
    """What `<Dial>` reports to its action: DialCallStatus, DialCallSid, DialCallDuration."""

    status: str  # completed | busy | no-answer | failed | canceled
    sid: str = ""
    duration: int = 0


@dataclass(frozen=True)
class Unsupported:
    tag: str


Verb = Say | Play | Pause | Gather | Hangup | Redirect | Reject | Connect | Dial | Unsupported


@dataclass(frozen=True)
class Document:
    verbs: tuple[Verb, ...]
    url: str | None = None  # where it was fetched from: the base for relative URLs


@dataclass(frozen=True)
class Fetch:
    url: str
    method: str = "POST"
    params: Mapping[str, str] = field(default_factory=dict)
    kind: str = "action"  # the SentWebhook kind: "action" | "redirect"


@dataclass(frozen=True)
class Ended:
    status: str  # the call's final CallStatus: completed | busy | no-answer
    reason: str  # hangup | end-of-document | callee-hangup | reject | application-error


Outcome = Fetch | Ended


class CallHost(Protocol):
    """What running TwiML needs from the emulated call."""

    @property
    def answered(self) -> bool: ...

    def answer(self) -> None: ...
    async def sleep(self, seconds: float) -> None: ...  # emulated seconds (time_scale applies)
    def hear(self, text: str) -> bool: ...  # True: the callee hangs up now
    def begin(self, text: str) -> None: ...  # a Say starts (logged by an answering machine)
    async def listen(self, dtmf: bool, speech: bool, timeout: float) -> tuple[str, str] | None: ...
    async def stream(self, stream: Stream) -> bool: ...  # True: the callee hung up
    async def dial(self, dial: Dial) -> DialOutcome: ...
    def note(self, code: int, message: str) -> None: ...


# ---------------------------------------------------------------------------- parsing


def _method(value: str | None) -> str:
    return "GET" if (value or "").strip().upper() == "GET" else "POST"


def _number(value: str | None, default: float, minimum: float = 0) -> float:
    try:
        number = float(value) if value is not None else default
    except ValueError:
        return default
    return number if number >= minimum else default


def _loop(el: ET.Element) -> int:
    count = int(_number(el.get("loop"), 1))
    return MAX_LOOPS if count == 0 else min(count, MAX_LOOPS)


def _text(el: ET.Element) -> str:
    # itertext: <Say> may wrap SSML (<prosody>, <break/>, ...) around what is spoken.
    return " ".join("".join(el.itertext()).split())


def _prompt(el: ET.Element) -> Say | Play | Pause | None:
    if el.tag == "Say":
        return Say(_text(el), _loop(el))
    if el.tag == "Play":
        return Play(_text(el), _loop(el), el.get("digits", ""))
    if el.tag == "Pause":
        return Pause(_number(el.get("length"), 1.0))
    return None


def _gather(el: ET.Element) -> Gather:
    inputs = frozenset(el.get("input", "dtmf").split()) & {"dtmf", "speech"}
    num_digits = int(_number(el.get("numDigits"), 0))
    prompts = tuple(p for p in (_prompt(child) for child in el) if p is not None)
    return Gather(
        input=inputs or frozenset({"dtmf"}),
        action=el.get("action") or None,
        method=_method(el.get("method")),
        timeout=_number(el.get("timeout"), 5.0),
        num_digits=num_digits or None,
        finish_on_key=el.get("finishOnKey", "#"),
        action_on_empty_result=el.get("actionOnEmptyResult", "false").lower() == "true",
        prompts=prompts,
    )


def _stream(el: ET.Element) -> Stream:
    params = {
        p.get("name", ""): p.get("value", "") for p in el if p.tag == "Parameter" and p.get("name")
    }
    return Stream(
        url=el.get("url", ""),
        name=el.get("name"),
        track=el.get("track", "inbound_track"),
        status_callback=el.get("statusCallback"),
        status_callback_method=_method(el.get("statusCallbackMethod")),
        parameters=params,
    )


def _dial_target(el: ET.Element) -> DialTarget:
    events = frozenset((el.get("statusCallbackEvent") or "completed").replace(",", " ").split())
    return DialTarget(
        address=_text(el),
        url=el.get("url") or None,
        method=_method(el.get("method")),
        status_callback=el.get("statusCallback") or None,
        status_callback_events=events,
        status_callback_method=_method(el.get("statusCallbackMethod")),
    )


def _dial(el: ET.Element) -> Dial | Unsupported:
    nouns = [child for child in el if child.tag in ("Number", "Sip")]
    if any(child.tag not in ("Number", "Sip") for child in el):
        return Unsupported("Dial")  # <Conference>, <Client>, <Queue>, ...: not modelled
    targets = tuple(_dial_target(n) for n in nouns)
    if not targets and (el.text or "").strip():
        targets = (DialTarget(address=(el.text or "").strip()),)
    return Dial(
        targets=targets,
        action=el.get("action") or None,
        method=_method(el.get("method")),
        timeout=_number(el.get("timeout"), 30.0, minimum=1),
        caller_id=el.get("callerId") or None,
    )


def _verb(el: ET.Element) -> Verb:
    prompt = _prompt(el)
    if prompt is not None:
        return prompt
    if el.tag == "Gather":
        return _gather(el)
    if el.tag == "Hangup":
        return Hangup()
    if el.tag == "Redirect":
        return Redirect(_text(el), _method(el.get("method")))
    if el.tag == "Reject":
        return Reject(el.get("reason", "rejected"))
    if el.tag == "Dial":
        return _dial(el)
    if el.tag == "Connect":
        streams = [child for child in el if child.tag == "Stream"]
        return Connect(
            _stream(streams[0]) if streams else None,
            el.get("action") or None,
            _method(el.get("method")),
        )
    return Unsupported(el.tag)


def parse_twiml(text: str | bytes, url: str | None = None) -> Document:
    """A TwiML document, or TwimlError 12100 when it is not one."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise TwimlError(12100, f"Document parse failure: {exc}") from exc
    if root.tag != "Response":
        raise TwimlError(12100, f"Document parse failure: root element is <{root.tag}>")
    return Document(tuple(_verb(child) for child in root), url)


# ---------------------------------------------------------------------------- running


def speaking_seconds(text: str) -> float:
    return max(0.3, len(text) * SPEECH_SECONDS_PER_CHAR)


def resolve(base: str | None, ref: str) -> str | None:
    """An absolute URL for `ref` (relative to the document's URL), or None when there is none."""
    if urlsplit(ref).scheme in ("http", "https"):
        return ref
    return urljoin(base, ref) if base else None


def gathered_digits(pressed: str, gather: Gather) -> str:
    """What Twilio posts as Digits: up to finishOnKey (excluded), at most numDigits."""
    if gather.finish_on_key and gather.finish_on_key in pressed:
        pressed = pressed[: pressed.index(gather.finish_on_key)]
    return pressed[: gather.num_digits] if gather.num_digits else pressed


async def _prompt_run(host: CallHost, verb: Say | Play | Pause) -> bool:
    """Run a Say/Play/Pause; True when the callee hung up on hearing it."""
    if isinstance(verb, Pause):
        await host.sleep(verb.length)
        return False
    for _ in range(verb.loop):
        if isinstance(verb, Say):
            host.begin(verb.text)
            await host.sleep(speaking_seconds(verb.text))
            heard = verb.text
        else:
            await host.sleep(PLAY_SECONDS if verb.url else 0.1 * len(verb.digits))
            heard = f"[play {verb.url}]" if verb.url else f"[digits {verb.digits}]"
        if host.hear(heard):
            return True
    return False


async def _gather_run(host: CallHost, gather: Gather, doc: Document) -> Outcome | None:
    for prompt in gather.prompts:
        if await _prompt_run(host, prompt):
            return Ended("completed", "callee-hangup")
    heard = await host.listen("dtmf" in gather.input, "speech" in gather.input, gather.timeout)
    params: dict[str, str] = {}
    if heard is not None and heard[0] == "dtmf":
        digits = gathered_digits(heard[1], gather)
        if digits:
            params = {"Digits": digits}
    elif heard is not None:
        params = {"SpeechResult": heard[1], "Confidence": DEFAULT_CONFIDENCE}
    if not params and not gather.action_on_empty_result:
        return None  # no input: fall through to the next verb, with no action request
    target = resolve(doc.url, gather.action) if gather.action else doc.url
    if target is None:
        # [M] inline TwiML has no document URL to default to; carry on with the next verb.
        host.note(11100, "Gather has no action URL to post the result to")
        return None
    return Fetch(target, gather.method, params, "action")


async def _dial_run(host: CallHost, dial: Dial, doc: Document) -> Outcome | None:
    """Connect the caller to the target; then its action, or the next verb without one."""
    if not dial.targets:
        host.note(13201, "Dial: no number or SIP URI to dial")
        return None
    outcome = await host.dial(dial)
    if outcome.status == "canceled":  # the caller hung up while it rang or talked
        return Ended("completed", "callee-hangup")
    if not dial.action:
        return None
    target = resolve(doc.url, dial.action)
    if target is None:
        host.note(11100, f"Invalid Dial action URL {dial.action!r}")
        return None
    params = {
        "DialCallStatus": outcome.status,
        "DialCallSid": outcome.sid,
        "DialCallDuration": str(outcome.duration),
    }
    return Fetch(target, dial.method, params, "action")


async def run_document(host: CallHost, doc: Document) -> Outcome:
    for verb in doc.verbs:
        if isinstance(verb, Reject):
            if host.answered:
                return Ended("completed", "reject")
            return Ended("busy" if verb.reason == "busy" else "no-answer", "reject")
        host.answer()  # the first verb that is not <Reject> answers an inbound call
        if isinstance(verb, Say | Play | Pause):
            if await _prompt_run(host, verb):
                return Ended("completed", "callee-hangup")
        elif isinstance(verb, Gather):
            outcome = await _gather_run(host, verb, doc)
            if outcome is not None:
                return outcome
        elif isinstance(verb, Hangup):
            return Ended("completed", "hangup")
        elif isinstance(verb, Redirect):
            target = resolve(doc.url, verb.url) if verb.url else None
            if target is None:
                host.note(11100, f"Invalid Redirect URL {verb.url!r}")
                return Ended("completed", "application-error")
            return Fetch(target, verb.method, {}, "redirect")
        elif isinstance(verb, Connect):
            if verb.stream is None:
                host.note(12200, "<Connect> without <Stream> is not emulated")
                continue
            if await host.stream(verb.stream):
                return Ended("completed", "callee-hangup")
            if verb.action:
                target = resolve(doc.url, verb.action)
                if target is not None:
                    return Fetch(target, verb.method, {}, "action")
        elif isinstance(verb, Dial):
            dialed = await _dial_run(host, verb, doc)
            if dialed is not None:
                return dialed
        else:
            host.note(12200, f"<{verb.tag}> is not emulated; skipped")
    return Ended("completed", "end-of-document")
