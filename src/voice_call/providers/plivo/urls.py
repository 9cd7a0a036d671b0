"""Callback URLs: everything a Plivo callback needs to be served by ANY instance rides in its query.

Plivo signs the whole URL it calls (V3 covers the query), so our call id, the flow, the turn
token and even the words to say can travel there instead of living in one process's memory:
`<webhook>?provider=plivo&flow=listen&callId=…&turnToken=…&say=…&voice=…&lang=…`.

Text goes in `say` as base64url of zlib-compressed UTF-8: plain ASCII in the URL (no
percent-encoding for a carrier to decode differently before signing), and a 4,000-character
message still fits. Above MAX_SAY_CHARS encoded the text is refused with a clear error rather
than sent in a URL the carrier might truncate.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

PROVIDER = "plivo"
MAX_SAY_CHARS = 4096  # encoded; the whole URL stays well under the 8 KB most proxies allow
MAX_TEXT_BYTES = 16_000  # decoded; bounds what a forged-but-signed `say` could inflate to


class Flow:
    """The `flow` query value: what a callback is for."""

    ANSWER = "answer"  # outbound answer_url, conversation: keep the line open
    NOTIFY = "notify"  # outbound answer_url, notify: Speak then Hangup
    RING = "ring"  # outbound ring_url
    HANGUP = "hangup"  # outbound hangup_url
    ANSWERED = "answered"  # inbound: Plivo ran our first XML, so the call is up
    SPEAK = "speak"  # transfer target: say `say`, then report playback end
    SPOKEN = "spoken"  # the Redirect after a Speak: playback ended
    LISTEN = "listen"  # transfer target: GetInput, the prompt nested
    RELISTEN = "relisten"  # the Redirect after a GetInput that heard nothing
    INPUT = "input"  # GetInput action: the caller's speech or keys
    KEEPALIVE = "keepalive"  # the Redirect after a long Wait
    MACHINE = "machine"  # machine_detection_url: `Machine=true`, a machine answered
    NO_MACHINE = "no-machine"  # the Redirect after the detection window: no machine, a person
    VOICEMAIL = "voicemail"  # transfer target: wait for the beep, say `say`, report its end
    RECORDED = "recorded"  # the Record API's callback_url: the file is ready
    TRANSFER = "transfer"  # transfer target: say `say`, then <Dial> `to` (`then`: cold | warm)
    DIALED = "dialed"  # the <Dial> action: DialStatus, how the transfer ended
    DIAL_EVENT = "dial-event"  # the <Dial> callbackUrl: the called party answered
    WHISPER = "whisper"  # the <Dial> confirmSound: what the called party hears (`say`) first


class TextTooLong(ValueError):
    pass


class BadCallbackQuery(ValueError):
    pass


def encode_text(text: str) -> str:
    raw = text.encode("utf-8", "replace")  # a lone surrogate (bad JSON escapes) becomes "?"
    packed = base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode("ascii")
    packed = packed.rstrip("=")
    if len(packed) > MAX_SAY_CHARS:
        raise TextTooLong(
            f"the text is too long to hand to Plivo: {len(text)} characters encode to "
            f"{len(packed)}, more than the {MAX_SAY_CHARS} that fit in a callback URL; "
            "shorten it or split it into several messages"
        )
    return packed


def decode_text(packed: str) -> str:
    if len(packed) > MAX_SAY_CHARS:
        raise BadCallbackQuery("say is longer than any this service writes")
    try:
        raw = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
        inflater = zlib.decompressobj()
        data = inflater.decompress(raw, MAX_TEXT_BYTES + 1)
        text = data.decode("utf-8")
    except (binascii.Error, ValueError, zlib.error) as exc:  # UnicodeDecodeError is a ValueError
        raise BadCallbackQuery(f"say is not valid encoded text: {exc}") from None
    if len(data) > MAX_TEXT_BYTES or not inflater.eof:
        raise BadCallbackQuery("say is not a complete, bounded text")
    return text


@dataclass(frozen=True)
class Callback:
    """What our own query says about a callback (all optional: Plivo's application URLs, set
    by the user for inbound calls, carry none of it)."""

    flow: str | None = None
    call_id: str | None = None
    turn_token: str | None = None
    say: str | None = None
    voice: str | None = None
    language: str | None = None
    then: str | None = None  # after a Speak: "listen" (a conversation) or keep the line open
    to: str | None = None  # a transfer's target (E.164 or a SIP URI)
    brief: str | None = None  # a warm transfer's summary, for the called party

    def query(self) -> dict[str, str]:
        items = {
            "provider": PROVIDER,
            "flow": self.flow,
            "callId": self.call_id,
            "turnToken": self.turn_token,
            "say": encode_text(self.say) if self.say else None,
            "voice": self.voice,
            "lang": self.language,
            "then": self.then,
            "to": self.to,
            "brief": encode_text(self.brief) if self.brief else None,
        }
        return {k: v for k, v in items.items() if v}


def callback_url(webhook_url: str, callback: Callback) -> str:
    """`webhook_url` with our params added (any query it already has is kept, first)."""
    parts = urlsplit(webhook_url)
    # `n` makes each URL we write unique, so two callbacks that are not retries of one another
    # never share a request key (a retry keeps the URL; the key leaves out Plivo's nonce).
    ours = {**callback.query(), "n": secrets.token_hex(6)}
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours]
    query = urlencode([*kept, *ours.items()])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


_LIMITS = {
    "flow": 32,
    "callId": 128,
    "turnToken": 128,
    "voice": 64,
    "lang": 32,
    "then": 16,
    "to": 256,
}


def read_callback(query: Mapping[str, str]) -> Callback:
    """Our params from a verified callback's query; BadCallbackQuery when one is malformed."""
    for name, limit in _LIMITS.items():
        if len(query.get(name, "")) > limit:
            raise BadCallbackQuery(f"{name} is longer than {limit} characters")
    say = query.get("say")
    return Callback(
        flow=query.get("flow") or None,
        call_id=query.get("callId") or None,
        turn_token=query.get("turnToken") or None,
        say=decode_text(say) if say else None,
        voice=query.get("voice") or None,
        language=query.get("lang") or None,
        then=query.get("then") or None,
        to=query.get("to") or None,
        brief=decode_text(query["brief"]) if query.get("brief") else None,
    )
