"""What every carrier's media socket says, in one vocabulary, and the shared parsing rules.

Each carrier class turns an incoming text frame into one of the dataclasses below and builds
the outgoing frames (media, mark/checkpoint, clear). `parse` never raises: anything that is not
a frame we understand comes back as `Malformed(reason)` (or `Ignored(event)` for a well-formed
event we have no use for), since every byte of it came from the network.
"""

from __future__ import annotations

import binascii
import json
import json.scanner
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

# json's C scanner, called directly: `json.loads` adds two Python calls and two regex passes
# (leading and trailing whitespace) to every frame, 50 a second per stream.
_scan_json: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    cast(Any, json.JSONDecoder())  # typeshed types the argument as a scanner: it is a decoder
)


def loads(text: str) -> Any:
    """`json.loads(text)`, exactly: same value, same errors; faster for a bare JSON text."""
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:  # empty, or leading whitespace: let json.loads say what is wrong
        return json.loads(text)
    if end != len(text):  # trailing whitespace (allowed) or extra data (an error)
        return json.loads(text)
    return value


# Ids we echo back inside JSON: kept to characters that need no escaping.
_SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_DTMF = re.compile(r"[0-9*#A-Da-d]")
_PAYLOAD_SLOT = "\x00"  # never in a JSON text we build: marks where a frame's base64 goes


@dataclass(frozen=True)
class Connected:
    pass


@dataclass(frozen=True)
class Start:
    call_id: str  # the carrier's id for the call (CallSid, call_control_id, CallUUID)
    stream_id: str | None
    custom_params: Mapping[str, str] = field(default_factory=dict)
    token: str | None = None  # when the carrier carries it inside the start frame
    encoding: str = "pcmu"  # "pcmu" | "pcma" | "l16" | whatever else the carrier named
    sample_rate: int = 8000


@dataclass(frozen=True)
class Media:
    payload: bytes
    timestamp_ms: int | None = None
    track: str = "inbound"


@dataclass(frozen=True)
class MarkAck:
    """A mark (Twilio, Telnyx) or checkpoint (Plivo) came back: the audio before it played."""

    name: str


@dataclass(frozen=True)
class Cleared:
    """Plivo's `clearedAudio`: the buffer was emptied."""


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class CarrierError:
    code: str
    title: str
    detail: str


@dataclass(frozen=True)
class Ignored:
    event: str


@dataclass(frozen=True)
class Malformed:
    reason: str


Inbound = (
    Connected | Start | Media | MarkAck | Cleared | Dtmf | Stop | CarrierError | Ignored | Malformed
)


class Bad(Exception):
    """Raised inside a frame handler; `parse` turns it into `Malformed`."""


def obj(parent: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise Bad(f"{where}{key} must be an object")
    return value


def text(parent: Mapping[str, Any], key: str, where: str = "") -> str:
    value = parent.get(key)
    if not isinstance(value, str) or not value:
        raise Bad(f"{where}{key} must be a non-empty string")
    return value


def safe_id(parent: Mapping[str, Any], key: str, where: str = "") -> str:
    value = text(parent, key, where)
    if not _SAFE_ID.fullmatch(value):
        raise Bad(f"{where}{key} has unexpected characters")
    return value


def optional_int(value: Any) -> int | None:
    """Counters come as strings (Twilio, Telnyx) or numbers (Plivo); anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def media_frame(message: Mapping[str, Any]) -> Media:
    """`{"media": {"payload", "track"?, "timestamp"?}}`, the same for all three carriers.

    Written flat, without the helpers above: this runs 50 times a second per stream.
    """
    media = message.get("media")
    if not isinstance(media, dict):
        raise Bad("media must be an object")
    raw = media.get("payload")
    if not isinstance(raw, str):
        raise Bad("media.payload must be a base64 string")
    try:
        # strict: exactly what b64decode(validate=True) accepts, without its regex pass
        data = binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, ValueError):
        raise Bad("media.payload is not valid base64") from None
    track = media.get("track")
    stamp = media.get("timestamp")
    return Media(
        data,
        None if stamp is None else optional_int(stamp),
        track if track.__class__ is str and track else "inbound",
    )


def digit(value: Any) -> str:
    if not isinstance(value, str) or not _DTMF.fullmatch(value):
        raise Bad("dtmf digit must be one of 0-9 * # A-D")
    return value


def string_map(value: Any) -> dict[str, str]:
    """Custom parameters: string keys to string values; others are dropped, not fatal."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def codec(name: str) -> str:
    folded = name.strip().lower()
    if folded in ("pcmu", "audio/x-mulaw", "audio/mulaw", "g711_ulaw", "mulaw"):
        return "pcmu"
    if folded in ("pcma", "audio/x-alaw", "audio/alaw", "g711_alaw", "alaw"):
        return "pcma"
    if folded in ("l16", "audio/x-l16", "audio/l16"):
        return "l16"
    return folded


def media_format(fmt: Mapping[str, Any], rate_key: str) -> tuple[str, int]:
    encoding = fmt.get("encoding")
    rate = optional_int(fmt.get(rate_key))
    return (codec(encoding) if isinstance(encoding, str) else "unknown", rate or 8000)


Handler = Callable[[Mapping[str, Any]], Inbound]


class StreamProtocol(ABC):
    """One carrier's media socket: parse what it sends, build what we send."""

    name: ClassVar[str]
    # Where the per-call token travels: a query parameter of the stream URL, or (False) the
    # start frame's custom parameters.
    token_in_query: ClassVar[bool]
    # Whether the carrier says `stop` before it ends a stream (else it just closes the socket).
    sends_stop: ClassVar[bool] = True

    def __init__(self) -> None:
        self.stream_id: str | None = None
        self._sid_json = "null"
        self._handlers: dict[str, Handler] = self.handlers()
        self._template()

    @abstractmethod
    def handlers(self) -> dict[str, Handler]: ...

    def parse(self, raw: str | bytes) -> Inbound:
        if isinstance(raw, bytes):
            return Malformed("binary frame: the carrier sends JSON text")
        try:
            # `loads`, inline for a bare JSON text (each media frame): same value, same errors
            message, end = _scan_json(raw, 0)
            if end != len(raw):
                message = json.loads(raw)
        except StopIteration:
            try:
                message = json.loads(raw)
            except (ValueError, RecursionError):
                return Malformed("not valid JSON")
        except (ValueError, RecursionError):
            return Malformed("not valid JSON")
        if not isinstance(message, dict):
            return Malformed("not a JSON object")
        event = message.get("event")
        if event == "media":  # the common case first
            try:
                return media_frame(message)
            except Bad as exc:
                return Malformed(f"media: {exc}")
        if not isinstance(event, str):
            return Malformed("no event name")
        handler = self._handlers.get(event)
        if handler is None:
            return Ignored(event[:64])
        try:
            return handler(message)
        except Bad as exc:
            return Malformed(f"{event}: {exc}")

    def bind(self, start: Start) -> None:
        """Remember the stream's id for the frames we send."""
        self.stream_id = start.stream_id
        self._sid_json = json.dumps(start.stream_id)
        self._template()

    def _template(self) -> None:
        """Split `media` at its payload once, so each frame is two concatenations of bytes."""
        head, *rest = self.media(_PAYLOAD_SLOT).split(_PAYLOAD_SLOT)
        if len(rest) != 1:
            raise TypeError(f"{type(self).__name__}.media must place the payload exactly once")
        self._media_head, self._media_tail = head.encode(), rest[0].encode()

    def media_json(self, ulaw: bytes) -> bytes:
        """`media(base64 of ulaw)` as UTF-8, byte for byte: the per-frame outbound message
        (50 a second per stream) without the str round trips."""
        return self._media_head + binascii.b2a_base64(ulaw, newline=False) + self._media_tail

    def _id_json(self) -> str:
        # Quoted once at bind time: the id passed `safe_id`, so it needs no escaping.
        return self._sid_json

    @abstractmethod
    def media(self, payload_b64: str) -> str:
        """A frame that plays 8 kHz µ-law audio (base64) to the caller."""

    @abstractmethod
    def mark(self, name: str) -> str:
        """A marker the carrier echoes once the audio sent before it has played."""

    @abstractmethod
    def clear(self) -> str:
        """Drop every bit of audio the carrier buffered but has not played yet."""
