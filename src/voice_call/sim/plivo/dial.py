"""`<Dial>` in the Plivo emulator: ring a transfer target, play it the confirmSound, bridge.

The target (`<Number>` digits, or `<User>` SIP URI) behaves as the emulator's
`TransferTargets` script says. When it answers, `callbackUrl` hears `DialAction=answer`, the
`confirmSound` XML is fetched and its Speaks said to the target (the transfer log keeps what it
heard), the parties talk for the script's `talk_ms`, then `callbackUrl` hears the hang-up and
`action` gets `DialStatus` (completed, busy, no-answer, failed) with the A and B leg ids.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

from voice_call.sim.plivo.call import PlivoLeg, Target
from voice_call.sim.plivo.webhooks import PlivoHooks
from voice_call.sim.transfer_target import Connection, TransferTargets

CHARS_PER_SECOND = 15.0
DEFAULT_TIMEOUT_S = 30.0  # [M] a Dial without `timeout` rings this long


def _address(noun: ET.Element) -> str:
    text = (noun.text or "").strip()
    if noun.tag == "Number" and text.isdigit():
        return "+" + text  # Plivo writes numbers without the `+`
    return text


def _seconds(value: str | None, default: float) -> float:
    try:
        return float(value) if value else default
    except ValueError:
        return default


class DialRun:
    def __init__(
        self, leg: PlivoLeg, hooks: PlivoHooks, targets: TransferTargets, element: ET.Element
    ) -> None:
        self.leg, self.hooks, self.targets, self.element = leg, hooks, targets, element
        self.b_leg = str(uuid.uuid4())

    def _target(self, name: str) -> Target | None:
        url = self.element.get(name)
        method = (self.element.get(f"{name.removesuffix('Url')}Method") or "POST").upper()
        return Target(url, method) if url else None

    def _params(self, target: str) -> dict[str, str]:
        return {
            **self.leg.params("in-progress"),
            "DialALegUUID": self.leg.id,
            "DialBLegUUID": self.b_leg,
            "DialBLegTo": target.lstrip("+"),
            "DialBLegFrom": self.element.get("callerId") or self.leg.call.from_number,
        }

    async def run(self) -> str | None:
        """Ring, bridge and report; the action's XML (redirect), or None to carry on."""
        nouns = [n for n in self.element if n.tag in ("Number", "User")]
        if not nouns:
            self.leg.call.extra.setdefault("xml_errors", []).append("Dial without Number/User")
            return None
        target = _address(nouns[0])
        link = self.targets.open(self.leg.id, target, "warm" if self._confirm() else "cold")
        status = await self._connect(target, link)
        link.status = status
        action = self._target("action")
        if action is None:
            return None
        params = self._params(target) | {"DialStatus": status, "DialAction": "hangup"}
        if (self.element.get("redirect") or "true").lower() == "false":
            await self.hooks.send("action", action, params)
            return None
        return await self.hooks.fetch_xml(self.leg, "action", action, params)

    def _confirm(self) -> Target | None:
        url = self.element.get("confirmSound")
        return Target(url, "POST") if url else None

    async def _connect(self, target: str, link: Connection) -> str:
        script = self.targets.script(target)
        timeout = _seconds(self.element.get("timeout"), DEFAULT_TIMEOUT_S)
        ring = script.answer_delay_ms / 1000
        if script.outcome == "failed":
            await self.leg.pause(0.05)
            return "failed"
        if script.outcome == "no-answer" or ring > timeout:
            await self.leg.pause(timeout)
            return "no-answer"
        await self.leg.pause(ring)
        if script.outcome == "busy":
            return "busy"
        callback = self._target("callbackUrl")
        if callback is not None:
            answered = self._params(target) | {"DialAction": "answer", "DialBLegStatus": "answer"}
            await self.hooks.send("dial-callback", callback, answered)
        confirm = self._confirm()
        if confirm is not None:
            link.heard += await self._whisper(confirm, target)
        self.targets.bridged(link)
        await self.leg.pause(script.talk_ms / 1000)
        if callback is not None:
            hangup = self._params(target) | {"DialAction": "hangup", "DialBLegStatus": "hangup"}
            await self.hooks.send("dial-callback", callback, hangup)
        return "completed"

    async def _whisper(self, confirm: Target, target: str) -> list[str]:
        hook = await self.hooks.send("confirm-sound", confirm, self._params(target))
        try:
            root = ET.fromstring(hook.response_body or "")
        except ET.ParseError:
            self.leg.call.extra.setdefault("xml_errors", []).append("confirmSound: bad XML")
            return []
        heard = [" ".join("".join(s.itertext()).split()) for s in root if s.tag == "Speak"]
        for line in heard:
            await self.leg.pause(max(0.3, len(line) / CHARS_PER_SECOND))
        return heard
