"""Plivo XML documents, built as element trees: text and attributes are always escaped.

Never an f-string of user text: what a caller or an agent says goes through ElementTree, and
characters XML 1.0 cannot carry (control codes, lone surrogates) are dropped first, so no text
can break the document Plivo runs (an invalid reply ends the call).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from voice_call.languages import listen_code, speak_code
from voice_call.providers.voices import CarrierVoice

CONTENT_TYPE = "text/xml"
# A keep-alive's Wait; the Redirect after it asks again, so a quiet line is never dropped by
# the XML running out (Plivo hangs up at the end of the document).
KEEPALIVE_S = 300
STREAM_CONTENT_TYPE = "audio/x-mulaw;rate=8000"  # what the media route accepts, both ways
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: str) -> str:
    return _NOT_XML.sub("", text)


@dataclass(frozen=True)
class Listen:
    action: str  # the GetInput action URL (our webhook, flow=input)
    language: str
    execution_timeout_s: int
    speech_end_timeout: str


def _element(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, tag, {k: clean(v) for k, v in attrs.items()})
    if text is not None:
        node.text = clean(text)
    return node


def _speak(parent: ET.Element, text: str, voice: CarrierVoice) -> None:
    language = speak_code(voice.language, "plivo")
    _element(parent, "Speak", text, voice=voice.voice, language=language)


def _redirect(parent: ET.Element, url: str) -> None:
    _element(parent, "Redirect", url, method="POST")


def render(root: ET.Element) -> str:
    return ET.tostring(root, encoding="unicode", short_empty_elements=True)


def empty() -> str:
    return render(ET.Element("Response"))


def keep_alive(redirect_url: str) -> str:
    root = ET.Element("Response")
    _element(root, "Wait", length=str(KEEPALIVE_S))
    _redirect(root, redirect_url)
    return render(root)


def hangup(reason: str | None = None) -> str:
    root = ET.Element("Response")
    if reason:
        _element(root, "Hangup", reason=reason)
    else:
        _element(root, "Hangup")
    return render(root)


def notify(text: str, voice: CarrierVoice, spoken_url: str) -> str:
    """The whole notify message: say it (one path, the callee hears it once), then tell us it
    was said (the Redirect): the manager hangs up notifyHangupDelaySec later."""
    return speak(text, voice, 0, spoken_url)


def wait_then(seconds: int, redirect_url: str) -> str:
    """Hold the line `seconds`, then ask us again (the Redirect)."""
    root = ET.Element("Response")
    _element(root, "Wait", length=str(max(1, seconds)))
    _redirect(root, redirect_url)
    return render(root)


def voicemail(text: str, voice: CarrierVoice, beep_wait_s: int, spoken_url: str) -> str:
    """A voicemail: wait for the machine's beep (`<Wait beep="true">`, over at the beep or
    after `beep_wait_s`), say `text`, then tell us it was said (the Redirect)."""
    root = ET.Element("Response")
    _element(root, "Wait", length=str(max(1, beep_wait_s)), beep="true")
    _speak(root, text, voice)
    _redirect(root, spoken_url)
    return render(root)


def hold_then_hangup(seconds: int) -> str:
    """After a notify message: hold the line while we wait to hang up, then hang up here
    anyway (we may be gone)."""
    root = ET.Element("Response")
    _element(root, "Wait", length=str(max(1, seconds)))
    _element(root, "Hangup")
    return render(root)


def speak(text: str, voice: CarrierVoice, lead_s: int, spoken_url: str) -> str:
    """Say `text` after a short lead, then tell us playback ended (the Redirect).

    The lead lets a listen that follows at once replace this document before a word is
    played: that listen nests the same prompt in its GetInput, so it is heard once, whole.
    """
    root = ET.Element("Response")
    if lead_s > 0:
        _element(root, "Wait", length=str(lead_s))
    _speak(root, text, voice)
    _redirect(root, spoken_url)
    return render(root)


def dial(
    target: str,
    *,
    announce: str | None,
    voice: CarrierVoice,
    action_url: str,
    callback_url: str,
    timeout_s: int,
    caller_id: str | None,
    whisper_url: str | None,
) -> str:
    """Say `announce`, then `<Dial>` the target (`<Number>`, or `<User>` for a SIP URI):
    `action` hears how it ended (DialStatus), `callbackUrl` that the called party answered,
    and `confirmSound` is XML the called party hears before the two are connected."""
    root = ET.Element("Response")
    if announce:
        _speak(root, announce, voice)
    attrs = {
        "action": clean(action_url),
        "method": "POST",
        "callbackUrl": clean(callback_url),
        "callbackMethod": "POST",
        "timeout": str(timeout_s),
        "redirect": "true",
    }
    if caller_id:
        attrs["callerId"] = clean(caller_id)
    if whisper_url:
        attrs["confirmSound"] = clean(whisper_url)
    element = _element(root, "Dial", **attrs)
    noun = "User" if target.startswith(("sip:", "sips:")) else "Number"
    _element(element, noun, target if noun == "User" else target.lstrip("+"))
    return render(root)


def whisper(text: str, voice: CarrierVoice) -> str:
    """A `confirmSound` document: what the called party hears before the bridge."""
    root = ET.Element("Response")
    _speak(root, text, voice)
    return render(root)


def listen(listen: Listen, prompt: str | None, voice: CarrierVoice, again_url: str) -> str:
    """GetInput for speech, the prompt nested; when nothing is heard, ask us again."""
    root = ET.Element("Response")
    get_input = _element(
        root,
        "GetInput",
        action=listen.action,
        method="POST",
        inputType="speech",
        language=listen_code(listen.language, "plivo"),
        executionTimeout=str(listen.execution_timeout_s),
        speechEndTimeout=listen.speech_end_timeout,
        # Run the XML our action answers: after speech we answer a keep-alive, so the next
        # element (the re-listen Redirect below) only runs when nothing was heard.
        redirect="true",
    )
    if prompt:
        _speak(get_input, prompt, voice)
    _redirect(root, again_url)
    return render(root)


def stream(url: str, timeout_s: int) -> str:
    """Connect the call's audio to our media WebSocket at `url` (its token in the query).

    Bidirectional, so we speak by sending audio; µ-law 8 kHz, the caller's track only (the one
    a bidirectional stream allows). keepCallAlive: the XML waits on the stream, which thus
    lasts the whole call, and its end (ours or the caller's) ends the call; anything that
    replaces this document (a transfer) closes the stream.
    """
    root = ET.Element("Response")
    _element(
        root,
        "Stream",
        url,
        bidirectional="true",
        keepCallAlive="true",
        contentType=STREAM_CONTENT_TYPE,
        audioTrack="inbound",
        streamTimeout=str(timeout_s),
    )
    return render(root)


def inbound_accept(answered_url: str) -> str:
    """An accepted inbound call: answered by our first element, which comes straight back to
    us so the call is reported answered only once Plivo is running our XML."""
    root = ET.Element("Response")
    _redirect(root, answered_url)
    return render(root)
