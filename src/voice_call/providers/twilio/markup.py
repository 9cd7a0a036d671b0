"""TwiML, built with ElementTree so every piece of user text and every URL is XML-escaped.

Nothing here formats XML by hand: `Twiml` collects verbs, `render` serialises them. Characters
XML 1.0 cannot carry (NUL, most control characters, lone surrogates) are dropped from text,
since Twilio answers a document it cannot parse with "an application error has occurred".
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from voice_call.languages import listen_code, speak_code
from voice_call.providers.voices import CarrierVoice

MAX_INLINE_TWIML = 4000  # Twilio refuses a longer `Twiml` parameter
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Twilio's <Play digits>: 0-9 * # and `w` (a half-second pause). Our wider DTMF alphabet maps
# onto it: `W` is a whole second, `p`/`P`/`,` are pauses as on a phone dialer.
_DIGIT_MAP = {"W": "ww", "p": "w", "P": "w", ",": "w"}


def twilio_digits(digits: str) -> str:
    """Our DTMF alphabet in Twilio's (`<Play digits>`, `SendDigits`): pauses as `w`s."""
    return "".join(_DIGIT_MAP.get(ch, ch) for ch in digits)


def clean(text: str) -> str:
    """Text XML can carry as it is (a parser would turn a bare CR into LF anyway)."""
    return _NOT_XML.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


class Twiml:
    """A `<Response>` document, one verb at a time."""

    def __init__(self) -> None:
        self.root = ET.Element("Response")

    def say(self, text: str, speech: CarrierVoice, parent: ET.Element | None = None) -> Twiml:
        el = ET.SubElement(
            self.root if parent is None else parent,
            "Say",
            {"voice": speech.voice, "language": speak_code(speech.language, "twilio")},
        )
        el.text = clean(text)
        return self

    def pause(self, seconds: int) -> Twiml:
        ET.SubElement(self.root, "Pause", {"length": str(max(1, seconds))})
        return self

    def play_digits(self, digits: str) -> Twiml:
        ET.SubElement(self.root, "Play", {"digits": clean(twilio_digits(digits))})
        return self

    def gather(
        self, action: str, speech: CarrierVoice, timeout_s: int, speech_timeout_s: int
    ) -> ET.Element:
        """A speech (and keypad) `<Gather>`; its result is POSTed to `action`. `timeout_s`:
        how long it waits for the caller to start; `speech_timeout_s`: the pause that ends
        what they say (silenceTimeoutMs)."""
        return ET.SubElement(
            self.root,
            "Gather",
            {
                "input": "dtmf speech",
                "speechTimeout": str(speech_timeout_s),
                "timeout": str(timeout_s),
                "language": listen_code(speech.language, "twilio"),
                "action": clean(action),
                "method": "POST",
            },
        )

    def redirect(self, url: str) -> Twiml:
        el = ET.SubElement(self.root, "Redirect", {"method": "POST"})
        el.text = clean(url)
        return self

    def stream(self, url: str, parameters: dict[str, str]) -> Twiml:
        """`<Connect><Stream>`: the call's audio both ways over our media WebSocket. Twilio
        forbids a query string on the URL, so the stream token rides in a `<Parameter>`."""
        connect = ET.SubElement(self.root, "Connect")
        stream = ET.SubElement(connect, "Stream", {"url": clean(url)})
        for name, value in parameters.items():
            ET.SubElement(stream, "Parameter", {"name": clean(name), "value": clean(value)})
        return self

    def dial(
        self,
        target: str,
        *,
        action: str,
        timeout_s: int,
        caller_id: str | None,
        status_callback: str,
        whisper: str | None = None,
    ) -> Twiml:
        """`<Dial>` one number (`<Number>`) or SIP URI (`<Sip>`): its `action` hears the
        outcome (DialCallStatus), the called party's `statusCallback` hears it answer, and
        `whisper` (a URL) is TwiML the called party hears before the two are connected."""
        attrs = {"action": clean(action), "method": "POST", "timeout": str(timeout_s)}
        if caller_id:
            attrs["callerId"] = clean(caller_id)
        dial = ET.SubElement(self.root, "Dial", attrs)
        noun = "Sip" if target.startswith(("sip:", "sips:")) else "Number"
        party = {
            "statusCallbackEvent": "answered",
            "statusCallback": clean(status_callback),
            "statusCallbackMethod": "POST",
        }
        if whisper:
            party["url"], party["method"] = clean(whisper), "POST"
        ET.SubElement(dial, noun, party).text = clean(target)
        return self

    def hangup(self) -> Twiml:
        ET.SubElement(self.root, "Hangup")
        return self

    def reject(self, reason: str = "rejected") -> Twiml:
        ET.SubElement(self.root, "Reject", {"reason": reason})
        return self

    def render(self) -> str:
        body = ET.tostring(self.root, encoding="unicode", short_empty_elements=True)
        return '<?xml version="1.0" encoding="UTF-8"?>' + body


def empty() -> str:
    """The empty document (every status callback's reply): built once."""
    return _EMPTY


_EMPTY = Twiml().render()
