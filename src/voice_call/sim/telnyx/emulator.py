"""Telnyx Call Control v2 emulator: REST on a loopback port, signed webhooks, media streaming.

    emu = TelnyxEmulator(
        api_key="KEYsim",              # Bearer token the app must send
        private_key=None,              # Ed25519 key that signs webhooks (object, PEM, base64
                                       # seed or seed‖public); None: a fresh one
        webhook_url=None,              # the Call Control App's URL: inbound calls and any Dial
                                       # without its own webhook_url
        script=CalleeScript(),         # ScriptChooser: one script, or f(number) -> script
        time_scale=1.0,                # multiplies every delay (answer, replies, ring timeout,
                                       # webhook retry back-off, 20 ms media pacing)
        dtmf_replies=(),               # keys the callee presses, one entry per gather attempt
                                       # (e.g. ("1234#",)); each call starts at the first
        *, connection_id="sim-connection", inbound_ring_timeout_s=30.0,
        stream_silence=True,           # send silence frames while the callee says nothing,
                                       # as Telnyx does; False sends only speech frames
        delivery=DeliveryPolicy(),     # webhook timeout / attempts / back-off
        port=0,
    )
    async with emu:                    # serves on 127.0.0.1
        emu.url                        # http://127.0.0.1:PORT  (REST paths start with /v2)
        emu.api_base                   # http://127.0.0.1:PORT/v2 (like https://api.telnyx.com/v2)
        emu.public_key                 # base64 raw Ed25519 public key: what the app trusts
        emu.calls                      # dict[call_control_id, EmulatedCall]
        emu.webhooks                   # WebhookLog: every delivery attempt, kind = event_type
        call = await emu.place_inbound("+15550001111", "+15559990000", script=None)
        await emu.wait_ended(call.id, timeout=10.0)   # -> EmulatedCall, after call.hangup went out
        await emu.hangup(call_id)                      # the person hangs up now (= remote_hangup)
        await emu.press_digits(call_id, "12")          # the person presses keys unprompted
        emu.leg(call_id)                               # TelnyxCall: the full per-call state

EmulatedCall for Telnyx: `id` is the call_control_id, `direction` outbound|inbound, `status` is
Telnyx's state word (bridging, parked, answered, hangup), `hangup_cause` Telnyx's cause, and
`extra` holds call_leg_id, call_session_id, connection_id, client_state, webhook_url,
start_time, end_time, hangup_source, stream_id, `audio_in` (bytearray: the µ-law the callee
heard from a bidirectional RTP stream), `mp3_in` (list of MP3 payloads in mp3 mode) and `commands`
(every accepted REST command as {"action", "body"}).

The callee (a SimulatedCallee per call; outbound calls pick their script by the `to` number,
inbound ones by the caller's `from` number) hears speak text, "[play <url|media_name>]",
"[audio N ms]" for RTP stream audio and "[mp3 N bytes]" for mp3-mode payloads; its lines reach
the app as call.transcription webhooks and/or µ-law on the stream's inbound track; its keys
(`dtmf_replies`) as call.dtmf.received + call.gather.ended; `send_dtmf` digits land in
`callee.digits`. Lifecycles (docs/carriers.md §4): answered → call.initiated, call.answered,
…, call.hangup normal_clearing; busy → user_busy/486; no-answer → timeout after timeout_secs;
failed → not_found/404 [M]; inbound unanswered → originator_cancel [M]. `webhooks` logs each
delivery attempt with `params` = the JSON envelope ({"data", "meta": {"attempt", "delivered_to"}})
and the signed headers; a URL that refuses or answers non-2xx is retried (DeliveryPolicy [M])
and logged with status_code None / the status.

Details, in this folder: commands.py (commands and the webhooks they cause), call.py (ringing,
hang-up), turns.py (when the callee talks), stream.py (WebSocket frames), rest.py (endpoints),
errors.py (error bodies), webhooks.py (delivery).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from voice_call.security.signatures import telnyx as signatures
from voice_call.sim.callee import CalleeScript, SimulatedCallee
from voice_call.sim.common import EmulatedCall, ScriptChooser, WebhookLog, choose_script
from voice_call.sim.control import with_control
from voice_call.sim.recordings import SimRecordings
from voice_call.sim.server import LoopbackService
from voice_call.sim.telnyx import params
from voice_call.sim.telnyx.amd import dial_amd
from voice_call.sim.telnyx.call import CallContext, TelnyxCall
from voice_call.sim.telnyx.rest import build_rest_app
from voice_call.sim.telnyx.switchboard import Switchboard
from voice_call.sim.telnyx.webhooks import DeliveryPolicy, WebhookSender

Body = dict[str, Any]

__all__ = ["DeliveryPolicy", "TelnyxEmulator"]

DEFAULT_SCRIPT = CalleeScript()


class TelnyxEmulator(LoopbackService):
    def __init__(
        self,
        api_key: str = "KEYsim",
        private_key: signatures.PrivateKeyLike | None = None,
        webhook_url: str | None = None,
        script: ScriptChooser = DEFAULT_SCRIPT,
        time_scale: float = 1.0,
        dtmf_replies: Sequence[str] = (),
        *,
        connection_id: str = "sim-connection",
        inbound_ring_timeout_s: float = 30.0,  # how long an inbound caller waits [M]
        stream_silence: bool = True,
        delivery: DeliveryPolicy | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.private_key = (
            signatures.generate_keypair()[0]
            if private_key is None
            else signatures.load_private_key(private_key)
        )
        self.public_key = signatures.public_key_b64(self.private_key)
        self.webhook_url = webhook_url
        self.script = script
        self.time_scale = time_scale
        self.dtmf_replies = tuple(dtmf_replies)
        self.connection_id = connection_id
        self.inbound_ring_timeout_s = inbound_ring_timeout_s
        self.stream_silence = stream_silence
        self.delivery = delivery or DeliveryPolicy()
        self.user_id = str(uuid.uuid4())
        self.calls: dict[str, EmulatedCall] = {}
        self.webhooks = WebhookLog()
        self._legs: dict[str, TelnyxCall] = {}
        self.recordings = SimRecordings()  # record_start's files, served back
        self._dial_commands: dict[str, str] = {}  # Dial command_id -> call_control_id
        self._client: httpx.AsyncClient | None = None
        self._context: CallContext | None = None
        self.switchboard = Switchboard(self._new_leg, self.find)
        self.targets = self.switchboard.targets  # who a transfer reaches, and the log of each

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        return f"{self.url}/v2"

    def asgi_app(self) -> Any:
        return with_control(build_rest_app(self), self)

    async def _on_start(self) -> None:
        self._client = httpx.AsyncClient(trust_env=False)
        sender = WebhookSender(
            self._client, self.private_key, self.webhooks, self.delivery, self.time_scale
        )
        self._context = CallContext(
            sender=sender,
            time_scale=self.time_scale,
            dtmf_replies=self.dtmf_replies,
            user_id=self.user_id,
            stream_silence=self.stream_silence,
            recordings=self.recordings,
            files_url=lambda: f"{self.url}/sim/recordings",
            switchboard=self.switchboard,
        )

    async def _on_stop(self) -> None:
        await self.switchboard.close()
        for leg in list(self._legs.values()):
            await leg.shutdown()

    async def _after_stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- driving calls ---------------------------------------------------------------------------

    def recording_file(self, recording_id: str) -> bytes | None:
        return self.recordings.file(recording_id)

    def leg(self, call_id: str) -> TelnyxCall:
        """The emulator's full state for one call (for tests that need more than EmulatedCall)."""
        return self._legs[call_id]

    def find(self, call_control_id: str) -> TelnyxCall | None:
        return self._legs.get(call_control_id)

    def dial(self, body: Body) -> Body:
        """`POST /v2/calls`: validate like Telnyx, start ringing, answer `data`."""
        command_id = body.get("command_id")
        if isinstance(command_id, str) and command_id in self._dial_commands:
            # A repeated Dial with the same command_id is ignored: the first call's data [M].
            return {**self._legs[self._dial_commands[command_id]].resource(), "is_alive": False}
        connection_id = params.required_text(body, "connection_id")
        to_number = params.number(body, "to")
        from_number = params.number(body, "from")
        webhook_url = params.url(body, "webhook_url", ("http", "https")) or self.webhook_url
        amd_mode, amd_config = dial_amd(body)
        caller = self.find(body["link_to"]) if isinstance(body.get("link_to"), str) else None
        script = (
            self.switchboard.script(to_number)  # a warm transfer's target
            if caller is not None
            else choose_script(self.script, to_number)
        )
        leg = self._new_leg(
            "outbound",
            from_number,
            to_number,
            script,
            connection_id=connection_id,
            webhook_url=webhook_url,
            client_state=params.client_state(body),
            timeout_secs=params.integer(body, "timeout_secs", 30, 5, 600),
            time_limit_secs=params.integer(body, "time_limit_secs", 14400, 30, 14400),
            stream=params.stream(body),
            transcription=params.transcription_config(body),
        )
        if isinstance(command_id, str):
            self._dial_commands[command_id] = leg.id
        leg.call.extra.update(amd=amd_mode, amd_config=amd_config)
        if caller is not None:
            self.switchboard.linked_dial(caller, leg)
        leg.start_outbound()
        return {**leg.resource(), "is_alive": False}  # dialling is asynchronous

    async def place_inbound(
        self, from_number: str, to_number: str, script: ScriptChooser | None = None
    ) -> EmulatedCall:
        """A call from `from_number` (the simulated person) to the app's `to_number`: Telnyx
        sends call.initiated (incoming, parked) to `webhook_url` and rings until the app
        answers, rejects or hangs up, or the caller gives up after `inbound_ring_timeout_s`."""
        if self.webhook_url is None:
            raise ValueError("place_inbound needs the connection's webhook_url")
        leg = self._new_leg(
            "inbound",
            from_number,
            to_number,
            choose_script(script or self.script, from_number),
            connection_id=self.connection_id,
            webhook_url=self.webhook_url,
            client_state=None,
        )
        leg.start_inbound(self.inbound_ring_timeout_s)
        return leg.call

    async def wait_ended(self, call_id: str, timeout: float = 10.0) -> EmulatedCall:
        call = self.calls[call_id]
        await asyncio.wait_for(call.ended.wait(), timeout)
        return call

    async def remote_hangup(self, call_id: str) -> None:
        """The person on the other end hangs up (call.hangup normal_clearing from their side)."""
        self._legs[call_id].remote_hangup()

    hangup = remote_hangup  # the name the Twilio emulator uses for the same thing

    async def press_digits(self, call_id: str, digits: str) -> None:
        await self._legs[call_id].press(digits)

    def _new_leg(
        self,
        direction: str,
        from_number: str,
        to_number: str,
        script: CalleeScript,
        **options: Any,
    ) -> TelnyxCall:
        if self._context is None:
            raise RuntimeError("start the emulator first (async with TelnyxEmulator(...))")
        # call_control_id looks like Telnyx's: "v3:" and URL-safe base64.
        call_id = "v3:" + secrets.token_urlsafe(36)
        call = EmulatedCall(
            id=call_id,
            direction=direction,
            from_number=from_number,
            to_number=to_number,
            callee=SimulatedCallee(script),
        )
        leg = TelnyxCall(
            self._context,
            call,
            call_leg_id=str(uuid.uuid4()),
            call_session_id=str(uuid.uuid4()),
            **options,
        )
        self.calls[call_id] = call
        self._legs[call_id] = leg
        return leg
