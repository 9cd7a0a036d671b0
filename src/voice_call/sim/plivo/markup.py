"""Runs the Plivo XML an application returns, element by element, against the simulated callee.

Supported (docs/carriers.md §3.2): Speak, Play, GetInput (speech and/or dtmf, nested Speak
and Play heard first), Wait, Hangup (reason, schedule), Redirect, Stream, and Dial to one
Number or User against the emulator's transfer targets (dial.py). Other valid elements
(Record, Conference, PreAnswer, DTMF, ...) are recorded in `call.extra["unsupported"]` and
skipped, as are GetInput's digitEndTimeout, speechEndTimeout and interim-results callback. The
time things take is carrier time (scaled by the leg's time_scale): speech lasts
about as long as it would be spoken, so a test sees realistic ordering at any scale.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import NoReturn

from voice_call.sim.machine import AnsweringMachine, note_start
from voice_call.sim.plivo.call import (
    REJECTED,
    REJECTED_BUSY,
    XML_HANGUP,
    XML_INVALID,
    CallOver,
    PlivoLeg,
    Target,
    Transferred,
    party_hangup,
)
from voice_call.sim.plivo.dial import DialRun
from voice_call.sim.plivo.stream import PlivoStreamClient
from voice_call.sim.plivo.webhooks import PlivoHooks
from voice_call.sim.transfer_target import TransferTargets

MAX_XML_BYTES = 100 * 1024  # [S] Plivo rejects a larger reply
CHARS_PER_SECOND = 15.0  # about 150 words a minute
PLAY_SECONDS = 2.0  # [M] a Play's length is unknown without fetching the file
KEY_PRESS_SECONDS = 0.25
SPEECH_CONFIDENCE = "0.92"
MAX_LOOPS = 1000  # loop="0" means "until the call ends"


def speech_seconds(text: str) -> float:
    return max(0.3, len(text) / CHARS_PER_SECOND)


def _number(text: str | None, default: float) -> float:
    try:
        return float(text) if text not in (None, "") else default
    except ValueError:
        return default


def _loops(element: ET.Element) -> int:
    count = int(_number(element.get("loop"), 1))
    return MAX_LOOPS if count <= 0 else count


def spoken_text(element: ET.Element) -> str:
    """The words of a Speak, SSML tags dropped and whitespace collapsed."""
    return " ".join("".join(element.itertext()).split())


class XmlRunner:
    def __init__(
        self, leg: PlivoLeg, hooks: PlivoHooks, targets: TransferTargets | None = None
    ) -> None:
        self.leg = leg
        self.hooks = hooks
        self.targets = targets if targets is not None else TransferTargets()
        self._verbs: dict[str, Callable[[ET.Element], Awaitable[str | None]]] = {
            "Speak": self._speak,
            "Play": self._play,
            "Wait": self._wait,
            "GetInput": self._get_input,
            "Hangup": self._hangup,
            "Redirect": self._redirect,
            "Stream": self._stream,
            "Dial": self._dial,
        }

    async def run(self, xml: str) -> None:
        """Run a document and whatever it leads to (action, Redirect); return at its end."""
        text: str | None = xml
        while text is not None:
            elements = self._parse(text)
            text = None
            for element in elements:
                self.leg.check()
                if self.leg.call.status == "ringing" and element.tag != "Hangup":
                    self.leg.mark_answered()  # an inbound call is answered by its first verb
                verb = self._verbs.get(element.tag)
                if verb is None:
                    self.leg.call.extra.setdefault("unsupported", []).append(element.tag)
                    continue
                text = await verb(element)
                if text is not None:
                    break

    def _parse(self, text: str) -> list[ET.Element]:
        if not text.strip():
            return []  # an empty reply: nothing more to do [M]
        if len(text.encode("utf-8")) > MAX_XML_BYTES:
            self._invalid("XML larger than 100 KB")
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            self._invalid(f"unparsable XML: {exc}")
        if root.tag != "Response":
            self._invalid(f"root element is {root.tag}, not Response")
        return list(root)

    def _invalid(self, why: str) -> NoReturn:
        self.leg.call.extra.setdefault("xml_errors", []).append(why)
        self.leg.end(XML_INVALID)
        raise CallOver

    async def _say(self, text: str) -> None:
        """The callee hears `text` for as long as it takes to speak; it may hang up after."""
        callee = self.leg.call.callee
        note_start(self.leg.call.extra, text)  # an answering machine logs when it began
        hangs_up = callee.hear(text)
        await self.leg.pause(speech_seconds(text))
        if hangs_up:
            callee.hung_up = True
            self.leg.end(party_hangup(self.leg.call.direction))
            raise CallOver

    async def _speak(self, element: ET.Element) -> None:
        text = spoken_text(element)
        for _ in range(_loops(element)):
            await self._say(text)

    async def _play(self, element: ET.Element) -> None:
        url = (element.text or "").strip()
        for _ in range(_loops(element)):
            # The callee cannot know what a recording says, so it hears a marker
            callee = self.leg.call.callee
            hangs_up = callee.hear(f"[play {url}]")
            await self.leg.pause(PLAY_SECONDS)
            if hangs_up:
                callee.hung_up = True
                self.leg.end(party_hangup(self.leg.call.direction))
                raise CallOver

    async def _wait(self, element: ET.Element) -> None:
        # silence/minSilence only matter for a machine; a plain pause is what an app sees.
        # beep="true" on a machine's greeting: over at the beep, or at `length` [S].
        length = _number(element.get("length"), 1.0)
        machine = self.leg.call.extra.get("machine")
        if element.get("beep", "").lower() == "true" and isinstance(machine, AnsweringMachine):
            length = min(length, machine.seconds_to_beep())
        await self.leg.pause(length)

    async def _hangup(self, element: ET.Element) -> None:
        schedule = _number(element.get("schedule"), 0.0)
        if schedule > 0:
            self.leg.after(schedule, XML_HANGUP)
            return None
        if self.leg.call.answered_at is None:
            # [M] a Hangup before any other verb rejects the inbound call instead of answering it
            reason = element.get("reason", "rejected")
            self.leg.end(REJECTED_BUSY if reason == "busy" else REJECTED)
        else:
            self.leg.end(XML_HANGUP)
        raise CallOver

    async def _redirect(self, element: ET.Element) -> str:
        target = Target((element.text or "").strip(), (element.get("method") or "POST").upper())
        params = self.leg.params("in-progress", "Redirect")  # [M] Event value
        return await self.hooks.fetch_xml(self.leg, "redirect", target, params)

    async def _dial(self, element: ET.Element) -> str | None:
        return await DialRun(self.leg, self.hooks, self.targets, element).run()

    async def _stream(self, element: ET.Element) -> None:
        stream = PlivoStreamClient(self.leg, element, self.hooks)
        task = asyncio.create_task(stream.run())
        self.leg.streams.append(task)
        if not stream.keep_call_alive:
            return None  # the stream runs on while the XML goes on
        try:
            await self.leg.until(task)
        except Transferred:
            stream.close("transfer")
            raise
        return None

    async def _get_input(self, element: ET.Element) -> str | None:
        action = element.get("action")
        if not action:
            self._invalid("GetInput without action")
        for child in element:
            if child.tag == "Speak":
                await self._speak(child)
            elif child.tag == "Play":
                await self._play(child)
        got = await self._listen(element)
        if got is None:
            return None  # [S] no input before executionTimeout: on to the next element
        target = Target(action, (element.get("method") or "POST").upper())
        params = self.leg.params("in-progress") | got
        if (element.get("redirect") or "true").lower() == "false":
            await self.hooks.send("action", target, params)  # notify only, then carry on
            self.leg.check()
            return None
        return await self.hooks.fetch_xml(self.leg, "action", target, params)

    async def _listen(self, element: ET.Element) -> dict[str, str] | None:
        """What the callee answers within executionTimeout (after the prompt), or None."""
        kinds = (element.get("inputType") or "dtmf").lower().split()
        timeout = _number(element.get("executionTimeout"), 15.0)
        callee = self.leg.call.callee
        delay = callee.script.reply_delay_ms / 1000
        keys = self.leg.dtmf_replies.pop(0) if "dtmf" in kinds and self.leg.dtmf_replies else ""
        if delay > timeout or not (keys or "speech" in kinds):
            await self.leg.pause(timeout)
            return None
        if keys:  # a scripted key press wins over speech ("the first input detected wins")
            await self.leg.pause(delay + KEY_PRESS_SECONDS * len(keys))
            callee.digits.append(keys)
            finish = element.get("finishOnKey", "#")
            if finish and finish.lower() != "none":
                keys = keys.split(finish[0])[0]
            digits = keys[: int(_number(element.get("numDigits"), 32))]
            return {
                "InputType": "dtmf",
                "Digits": digits,
                "Speech": "",
                "SpeechConfidenceScore": "",
                "BilledAmount": "0.00000",
            }
        await self.leg.pause(delay)
        line = callee.next_line()
        if line is None:
            await self.leg.pause(timeout - delay)
            return None
        await self.leg.pause(speech_seconds(line))
        return {
            "InputType": "speech",
            "Digits": "",
            "Speech": line,
            "SpeechConfidenceScore": SPEECH_CONFIDENCE,
            "BilledAmount": "0.00500",
        }
