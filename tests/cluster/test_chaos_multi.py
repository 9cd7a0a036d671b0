"""Three `voicecall serve` processes on one Redis behind a round-robin balancer, the Telnyx
emulator (the carrier and every callee) pointed at the balancer, one instance killed with -9
mid-run and restarted (issue 17, item 5).

Streaming is on or off for a whole deployment (`streaming.enabled`), so the native-speech
conversations and the streamed calls run as two phases, each on its own three instances and
Redis prefix: 50 conversations in which Telnyx transcribes the callee (`call.transcription`
webhooks), then 20 calls whose audio travels over a media WebSocket through the balancer
(STT and TTS on the fake OpenAI). Every webhook and every stream goes through the balancer, so
any instance may get any of them; the carrier retries a webhook that was not answered 2xx.

What must hold, from both ends (our store, read over RPC through the balancer, and the
emulator's ledger and webhook log):
- no call dialed twice;
- no acknowledged webhook lost: every event of a webhook the carrier got a 2xx for is in the
  store's event log, by its dedupe key (Telnyx's event id);
- every call terminal at both ends: each callee hangs up after its last line, so a call still
  live at both ends SETTLE_S after the restart is stuck, and one live at one end only is lost;
- whole transcripts for the calls the killed instance neither owned nor held the stream of;
  the calls it owned are taken over and must end, their transcripts are reported, not judged
  (a line in flight at the kill may be cut);
- a streamed call whose socket the killed instance held ends with the reason on its record
  (`endReason` error, `metadata.error` naming the media stream); one whose socket reached it
  but died before it was registered anywhere goes on with the carrier's voice (nobody knew of
  the stream: the one-path rule), which is counted.

Who owned which call and held which stream at the kill is read from Redis as the cluster records
it (`P:owner:{call}`, `P:stream:{call}`, `P:inst:{id}` → pid) and from the balancer (which
backend each media socket went to). The summary of counts is printed, and shown on a failure.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.cluster.balancer import Balancer
from tests.cluster.instances import Instances, ServeProcess
from tests.providers.streaming_support import KEY, streaming_config
from tests.store.redis_server import RedisServer
from tests.support import merge, wait_until
from voice_call.models import CallState
from voice_call.providers.telnyx.webhooks import parse
from voice_call.sim.callee import CalleeScript
from voice_call.sim.common import SentWebhook
from voice_call.sim.openai import FakeOpenAI, SpeechScript, TranscriptionScript
from voice_call.sim.openai.realtime import TranscriptTurn
from voice_call.sim.telnyx import TelnyxEmulator
from voice_call.sim.telnyx.webhooks import DeliveryPolicy

API_KEY = "KEYtelnyx_cluster_test"
CONNECTION_ID = "1494404757140276705"
APP_NUMBER = "+15550001000"
SECRET = "a-shared-stream-secret-of-32-chars!"
GREETING = "Hello, this is the clinic."
# A greeting of ~4.5 s (1.1 s at NATIVE_SCALE): the calls placed last are in it at the kill.
NATIVE_GREETING = "Hello, this is the clinic on Main Street, calling about your appointment."
NATIVE_CALLS = 50
STREAMED_CALLS = 20
NATIVE_SCALE = 0.25  # emulated delays (answer, speech, replies) at a quarter of real time
STREAMED_SCALE = 1.0  # media paced in real time: 50 frames/s per call each way
STREAM_LINES = ("Hi, this is Sam.", "Tuesday works.")
SETTLE_S = 45.0  # how long every call may take to end once the instance is back
SPEAK_LATENCY_S = 0.3  # the carrier's REST round trip for a speak command (real seconds)


class SpeakLatency:
    """ASGI wrapper: the carrier takes SPEAK_LATENCY_S to accept each speak command, as a REST
    round trip over the internet does, and `in_flight` names the calls with one under way."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.in_flight: set[str] = set()  # call_control_ids

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not path.endswith("/actions/speak"):
            return await self.app(scope, receive, send)
        call_control_id = path.split("/")[-3]  # /v2/calls/{id}/actions/speak
        self.in_flight.add(call_control_id)
        try:
            await asyncio.sleep(SPEAK_LATENCY_S)
            await self.app(scope, receive, send)
        finally:
            self.in_flight.discard(call_control_id)


class Telnyx(TelnyxEmulator):
    """The Telnyx emulator with a carrier's speak latency (`speaking`: calls with one under way)."""

    def asgi_app(self) -> Any:
        self.speaking = SpeakLatency(super().asgi_app())
        return self.speaking


def delivery(scale: float) -> DeliveryPolicy:
    """Retries spread over ~15 s of real time, past the instance lease (5 s): a carrier keeps
    trying for longer than a restart takes (Telnyx's schedule is not documented)."""
    return DeliveryPolicy(attempts=6, backoff_s=tuple(s / scale for s in (0.5, 1, 2, 4, 8)))


def native_number(n: int) -> str:
    return f"+1555020{n:04d}"


def native_lines(number: str) -> tuple[str, ...]:
    n = int(number[-4:])
    return (f"Hi, caller {n} here.", f"Tuesday works for {n}.", "Bye for now.")


def native_script(number: str) -> CalleeScript:
    return CalleeScript(
        replies=native_lines(number), answer_delay_ms=800, reply_delay_ms=400, hangup_after_turns=3
    )


def whole_native(number: str) -> list[tuple[str, str]]:
    expected = [("bot", NATIVE_GREETING)]
    for line in native_lines(number):
        expected += [("user", line), ("bot", f"You said: {line}")]
    return expected


def base_config(
    emu: TelnyxEmulator, lb: Balancer, redis: RedisServer, prefix: str
) -> dict[str, Any]:
    return {
        "provider": "telnyx",
        "fromNumber": APP_NUMBER,
        "telnyx": {
            "apiKey": API_KEY,
            "connectionId": CONNECTION_ID,
            "publicKey": emu.public_key,
            "apiBaseUrl": emu.api_base,  # a local emulator: a loopback webhook URL is right
        },
        "serve": {"bind": "127.0.0.1"},
        "publicUrl": f"{lb.url}/voice/webhook",  # carriers and stream URLs name the balancer
        "store": {"backend": "redis", "url": redis.url, "prefix": prefix},
        # The emulator is one loopback client for every call, where a carrier calls from many
        # addresses: the per-client limits (429 / 1013 refusals) would throttle it as a flood.
        "webhookSecurity": {"maxInFlightPerClient": 200},
        "streaming": {"tokenSecret": SECRET, "maxPendingConnectionsPerIp": 32},
        "responder": {"provider": "echo"},
        "outbound": {"defaultMode": "conversation", "notifyHangupDelaySec": 0},
        "maxConcurrentCalls": 100,
    }


# -- the deployment ------------------------------------------------------------------------------


class Rpc:
    """JSON-RPC through the balancer with the shared token; reads retry a dropped connection
    (the instance that took the request may have just been killed)."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.AsyncClient(
            base_url=url,
            timeout=20,
            trust_env=False,
            headers={"Authorization": f"Bearer {token}"},
        )

    async def __call__(self, method: str, params: dict[str, Any], *, retry: bool = True) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        for attempt in range(8):
            try:
                reply = (await self.http.post("/rpc", json=body)).json()
            except httpx.TransportError:
                if not retry or attempt == 7:
                    raise
                await asyncio.sleep(0.25)
                continue
            assert "result" in reply, f"{method}: {reply}"
            return reply["result"]
        raise AssertionError("unreachable")

    async def record(self, call_id: str) -> dict[str, Any]:
        found: dict[str, Any] = (await self("voicecall.status", {"callId": call_id, "full": True}))[
            "call"
        ]
        return found

    async def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = await self("voicecall.events", {"since": out[-1]["seq"] if out else 0})
            if not page["events"]:
                return out
            out.extend(page["events"])


@dataclass
class Deployment:
    instances: Instances
    lb: Balancer
    emu: Telnyx
    rpc: Rpc
    redis: RedisServer
    prefix: str
    log: list[dict[str, Any]] = field(default_factory=list)  # the store's event log, at the end
    killed_at: float = 0.0  # wall clock

    def holders(self, kind: str) -> dict[str, int | None]:
        """call id → pid of the instance Redis names as its `owner` or `stream` holder."""
        client = self.redis.client()
        try:
            pids: dict[str, int] = {}
            for key in client.scan_iter(f"{self.prefix}:inst:*"):
                raw = client.get(key)
                if raw:
                    pids[key.rsplit(":", 1)[1]] = int(json.loads(raw)["pid"])
            out: dict[str, int | None] = {}
            for key in client.scan_iter(f"{self.prefix}:{kind}:*"):
                holder = client.get(key)
                out[key.rsplit(":", 1)[1]] = pids.get(holder) if holder else None
            return out
        finally:
            client.close()

    def speaking(self) -> set[str]:
        """Calls with a speak command under way at the carrier: their owner has logged that the
        bot speaks and waits for the carrier to take the line."""
        return {
            call_id
            for call_id, legs in legs_by_call(self.emu).items()
            if any(leg.id in self.emu.speaking.in_flight for leg in legs)
        }

    def speaking_on(self, victim: ServeProcess) -> int:
        """How many calls `victim` owns have a speak command under way."""
        owners = self.holders("owner")
        return sum(1 for call_id in self.speaking() if owners.get(call_id) == victim.pid)

    def sockets_on(self, victim: ServeProcess) -> set[str]:
        """Calls whose media socket the balancer handed to `victim` (registered or not)."""
        out = set()
        for call_id, legs in legs_by_call(self.emu).items():
            for leg in legs:
                params = self.emu.leg(leg.id).stream_on_answer
                if params is None:
                    continue
                url = urlsplit(params.url)
                target = f"{url.path}?{url.query}" if url.query else url.path
                if self.lb.upgrades.get(target) == victim.port:
                    out.add(call_id)
        return out

    async def kill_and_restart(self, victim: ServeProcess) -> Kill:
        """kill -9 `victim`, note who held what at that moment, start it again."""
        assert victim.pid is not None
        live = {
            call_id
            for call_id, legs in legs_by_call(self.emu).items()
            if not all(leg.ended.is_set() for leg in legs)
        }
        self.killed_at = time.time()
        owners, streams, sockets = (
            self.holders("owner"),
            self.holders("stream"),
            self.sockets_on(victim),
        )
        kill = Kill(victim.pid, owners, streams, live, sockets, self.speaking())
        victim.kill9()
        await victim.start()
        return kill


@dataclass(frozen=True)
class Kill:
    """Who owned which call, and who held which stream, when the victim died."""

    pid: int
    owners: dict[str, int | None]
    streams: dict[str, int | None]
    live: set[str]  # calls the carrier had not ended yet
    sockets: set[str]  # calls whose media socket the balancer had handed to the victim
    speaking: set[str]  # calls with a speak command under way at the carrier

    def hit(self, call_ids: list[str], held: Callable[[str], bool]) -> int:
        """How many of these calls were live and held by the victim: 0 proves nothing."""
        return sum(1 for c in call_ids if c in self.live and held(c))

    def owned(self, call_id: str) -> bool:
        return self.owners.get(call_id) == self.pid

    def streamed(self, call_id: str) -> bool:
        """Its stream died with the victim (held there, or opened there and not yet held)."""
        return self.streams.get(call_id) == self.pid or call_id in self.sockets


@asynccontextmanager
async def deployment(
    root: Path,
    redis: RedisServer,
    emu: Telnyx,
    extra: Callable[[TelnyxEmulator], dict[str, Any]],
) -> AsyncIterator[Deployment]:
    instances = Instances(root, 3)
    prefix = RedisServer.prefix()
    async with Balancer(instances.ports) as lb:
        emu.webhook_url = f"{lb.url}/voice/webhook"
        async with emu:
            instances.configure(merge(base_config(emu, lb, redis, prefix), extra(emu)))
            rpc = Rpc(lb.url, instances.token)
            try:
                await instances.start()
                yield Deployment(instances, lb, emu, rpc, redis, prefix)
            finally:
                await rpc.http.aclose()
                await instances.stop()


# -- what both ends say ----------------------------------------------------------------------------


def our_call_id(client_state: str | None) -> str | None:
    if not client_state:
        return None
    return base64.b64decode(client_state).decode().split(":", 1)[0]


def acknowledged(hook: SentWebhook) -> bool:
    return hook.status_code is not None and 200 <= hook.status_code < 300


def event_keys(hook: SentWebhook) -> list[str]:
    """The dedupe keys of the events our server makes of this webhook (none for kinds it does
    not act on), from the exact bytes the emulator sent."""
    body = json.dumps(hook.params, separators=(",", ":")).encode()
    return [event.key for event in parse(body)]


@dataclass
class Verdict:
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    why_failed: Counter[str] = field(default_factory=Counter)  # failed webhook deliveries
    notes: list[str] = field(default_factory=list)  # not failures: what the taken-over calls did

    def fail(self, what: str) -> None:
        self.counts["problems"] += 1
        if len(self.problems) < 25:
            self.problems.append(what)

    def summary(self, deployment: Deployment) -> str:
        lines = [f"{k}: {v}" for k, v in sorted(self.counts.items())]
        lines.append(f"state folders (serve.log each): {deployment.instances.root}")
        lines.append(
            f"balancer picks {dict(deployment.lb.picks)} refusals {dict(deployment.lb.refusals)}"
        )
        lines += [f"webhook delivery failed x{n}: {why}" for why, n in self.why_failed.items()]
        lines += self.problems
        lines += self.notes[:10]
        for proc in deployment.instances:
            noisy = [
                ln
                for ln in proc.log_tail(4000).splitlines()
                if "ERROR" in ln or "Traceback" in ln or "Error" in ln
            ]
            lines.append(f"== instance {proc.port} (pid {proc.pid}): {len(noisy)} error lines")
            lines += noisy[-6:]
        return "\n".join(lines)


async def settle(deployment: Deployment, call_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Wait until every call is terminal in our store and ended at the carrier (or time runs
    out); the records as they are then."""
    records: dict[str, dict[str, Any]] = {}
    deadline = asyncio.get_running_loop().time() + SETTLE_S
    while True:
        for call_id in call_ids:
            if call_id not in records or not CallState(records[call_id]["state"]).terminal:
                records[call_id] = await deployment.rpc.record(call_id)
        legs = legs_by_call(deployment.emu)
        done = all(CallState(r["state"]).terminal for r in records.values()) and all(
            all(leg.ended.is_set() for leg in legs.get(call_id, [])) for call_id in call_ids
        )
        if done or asyncio.get_running_loop().time() > deadline:
            return records
        await asyncio.sleep(0.5)


def legs_by_call(emu: TelnyxEmulator) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for leg in emu.calls.values():
        call_id = our_call_id(leg.extra.get("client_state"))
        if call_id is not None and leg.direction == "outbound":
            out.setdefault(call_id, []).append(leg)
    return out


async def judge_both_ends(
    deployment: Deployment, records: dict[str, dict[str, Any]], verdict: Verdict, kill: Kill
) -> None:
    emu = deployment.emu
    legs = legs_by_call(emu)
    deployment.log = await deployment.rpc.events()
    verdict.counts["calls"] = len(records)
    verdict.counts["live at the kill"] = len(kill.live)
    ends = [leg.ended_at for legs_ in legs.values() for leg in legs_ if leg.ended_at]
    if ends and deployment.killed_at:
        verdict.counts["last carrier hang-up, s after the kill"] = round(
            max(ends) - deployment.killed_at
        )
    for call_id, record in records.items():
        dialed = len(legs.get(call_id, []))
        if dialed != 1:
            verdict.fail(f"call {call_id} dialed {dialed} times")
            verdict.counts["dialed not once"] += 1
        ours = CallState(record["state"]).terminal
        theirs = all(leg.ended.is_set() for leg in legs.get(call_id, []))
        verdict.counts["terminal in store"] += ours
        verdict.counts["ended at carrier"] += theirs
        if ours != theirs:
            verdict.counts["ends disagree"] += 1
            verdict.fail(
                f"call {call_id}: ours {record['state']}, carrier ended={theirs};"
                f" {where(deployment, kill, call_id)}"
            )
        elif not ours:  # every callee hangs up after its last line: a live call is stuck
            verdict.counts[f"stuck: live at both ends {SETTLE_S:g} s on"] += 1
            verdict.fail(
                f"call {call_id} stuck {record['state']}; {where(deployment, kill, call_id)}"
            )
    logged = {e.get("dedupeKey") for e in deployment.log}
    hooks = [h for h in emu.webhooks if acknowledged(h)]
    verdict.counts["webhooks acknowledged"] = len(hooks)
    failed = [h for h in emu.webhooks if not acknowledged(h)]
    verdict.counts["webhook deliveries failed (retried)"] = len(failed)
    verdict.why_failed = Counter(f"{h.status_code} {h.response_body[:70]}" for h in failed)
    for hook in hooks:
        for key in event_keys(hook):
            if key not in logged:
                verdict.counts["acknowledged events lost"] += 1
                payload = hook.params["data"]["payload"]
                verdict.fail(
                    f"lost {hook.kind} {key} of {our_call_id(payload.get('client_state'))}"
                    f" answered {hook.status_code} {hook.response_body[:80]!r}"
                )


def where(deployment: Deployment, kill: Kill, call_id: str) -> str:
    """Which instance owned the call and held its stream at the kill, and what the callee
    heard: enough to tell a routing fault from a lost write."""

    def name(pid: int | None) -> str:
        if pid is None:
            return "-"
        if pid == kill.pid:
            return "killed"
        ports = [p.port for p in deployment.instances if p.pid == pid]
        return str(ports[0]) if ports else str(pid)

    legs = legs_by_call(deployment.emu).get(call_id, [])
    heard = [leg.callee.heard for leg in legs]
    said = [leg.callee.said for leg in legs]
    actions = [commands(leg) for leg in legs]
    hooks = [
        f"{h.kind}:{h.status_code}"
        + (f"({h.params['data']['payload'].get('failure_reason')})" if "failed" in h.kind else "")
        for leg in legs
        for h in deployment.emu.webhooks
        if h.params["data"]["payload"].get("call_control_id") == leg.id
    ]
    frames = [len(leg.extra.get("frames_in", [])) for leg in legs]
    owner, stream = kill.owners.get(call_id), kill.streams.get(call_id)
    logged = [
        e["type"] + (f"({e['data'].get('transcript')!r})" if e["type"] == "call.speech" else "")
        for e in deployment.log
        if e.get("callId") == call_id
    ]
    return (
        f"owner {name(owner)} stream {name(stream)}; callee heard {heard} said {said};"
        f" carrier commands {actions}; webhooks {hooks}; stream frames from us {frames};"
        f" events {logged}"
    )


def commands(leg: Any) -> list[str]:
    """The REST commands the carrier accepted for one leg (speak, hangup, …)."""
    return [c["action"] for c in leg.extra.get("commands", [])]


def transcript(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["speaker"], e["text"]) for e in record["transcript"]]


# -- judging transcripts --------------------------------------------------------------------------


def judge_transcript(
    cluster: Deployment, kill: Kill, call_id: str, record: dict[str, Any], whole: bool, v: Verdict
) -> None:
    """Whole, unless the killed instance owned the call: then it was taken over, and the line
    in flight at the kill may be cut (noted, not judged); the call must still end."""
    if kill.owned(call_id):
        v.counts["taken over, whole"] += whole
        if not whole:
            v.notes.append(
                f"note: taken over {call_id} {transcript(record)}; {where(cluster, kill, call_id)}"
            )
        return
    if not whole:
        v.counts["transcripts not whole"] += 1
        v.fail(
            f"call {call_id} ({record['state']}) transcript {transcript(record)};"
            f" {where(cluster, kill, call_id)}"
        )


def judge_stream(
    cluster: Deployment, kill: Kill, call_id: str, record: dict[str, Any], v: Verdict
) -> None:
    """A streamed call: on the carrier's voice only when its socket died with the victim before
    it was registered; whole, or (its socket on the victim) ended with the reason recorded."""
    spoke = [a for leg in legs_by_call(cluster.emu).get(call_id, []) for a in commands(leg)]
    whole = transcript(record) == whole_streamed()
    if not kill.streamed(call_id):
        if "speak" in spoke:
            v.counts["fell back to the carrier's voice"] += 1
            v.fail(f"call {call_id} was not streamed; {where(cluster, kill, call_id)}")
        judge_transcript(cluster, kill, call_id, record, whole, v)
    elif whole:
        pass  # it ended between the look at Redis and the kill
    elif "speak" in spoke and kill.streams.get(call_id) is None:
        # its socket died before any instance registered it: nobody knew of the stream, so
        # the call went on with the carrier's voice (the one-path rule)
        v.counts["stream died unregistered, carrier's voice"] += 1
    else:
        error = record.get("metadata", {}).get("error", "")
        if record.get("endReason") != "error" or "media stream" not in error:
            v.counts["dead streams without a reason"] += 1
            v.fail(
                f"call {call_id} lost its stream: {record['state']} {record.get('endReason')};"
                f" {where(cluster, kill, call_id)}"
            )


def conclude(cluster: Deployment, verdict: Verdict) -> None:
    summary = verdict.summary(cluster)
    print(summary)  # shown with a failure, or with -s
    assert not verdict.problems, summary


# -- the tests -----------------------------------------------------------------------------------


async def test_native_conversations_across_a_kill9(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    emu = Telnyx(
        API_KEY,
        script=native_script,
        time_scale=NATIVE_SCALE,
        connection_id=CONNECTION_ID,
        delivery=delivery(NATIVE_SCALE),
    )
    async with deployment(tmp_path, redis_server, emu, lambda _: {}) as cluster:
        gate = asyncio.Semaphore(10)

        async def place(n: int) -> tuple[str, str]:
            async with gate:
                to = native_number(n)
                params = {"to": to, "message": NATIVE_GREETING, "mode": "conversation"}
                started = await cluster.rpc("voicecall.initiate", params, retry=False)
                return started["callId"], to

        placed = dict(await asyncio.gather(*(place(n) for n in range(NATIVE_CALLS))))
        victim = cluster.instances[1]

        async def victim_mid_speech() -> bool:
            # A hard moment to take a call over: its owner logged that the bot speaks, sent
            # the line to the carrier, and dies before the carrier answered.
            return cluster.speaking_on(victim) >= 2

        await wait_until(victim_mid_speech, 20)
        kill = await cluster.kill_and_restart(victim)
        records = await settle(cluster, list(placed))

        verdict = Verdict()
        await judge_both_ends(cluster, records, verdict, kill)
        verdict.counts["owner recorded"] = sum(1 for c in placed if c in kill.owners)
        verdict.counts["owned by the killed instance"] = sum(1 for c in placed if kill.owned(c))
        verdict.counts["taken over with a speak under way"] = sum(
            1 for c in placed if kill.owned(c) and c in kill.speaking
        )
        if not kill.hit(list(placed), kill.owned):
            verdict.fail("the kill hit no live call: nothing was taken over")
        for call_id, number in placed.items():
            whole = transcript(records[call_id]) == whole_native(number)
            judge_transcript(cluster, kill, call_id, records[call_id], whole, verdict)
        conclude(cluster, verdict)


def stream_line(turn: TranscriptTurn) -> str:
    """The fake STT hears each socket's n-th stretch of speech as the n-th line every streamed
    callee says: one socket per call, so concurrent calls never swap lines."""
    return STREAM_LINES[turn.index] if turn.index < len(STREAM_LINES) else ""


def whole_streamed() -> list[tuple[str, str]]:
    expected = [("bot", GREETING)]
    for line in STREAM_LINES:
        expected += [("user", line), ("bot", f"You said: {line}")]
    return expected


async def test_streamed_calls_across_a_kill9(tmp_path: Path, redis_server: RedisServer) -> None:
    # The callee says "hello?" this long after the stream opens unless the greeting began: 3 s
    # leaves the greeting room to start first with 20 calls ringing at once on a small machine.
    script = CalleeScript(
        replies=STREAM_LINES, answer_delay_ms=300, reply_delay_ms=3000, hangup_after_turns=2
    )
    emu = Telnyx(
        API_KEY,
        script=script,
        time_scale=STREAMED_SCALE,
        connection_id=CONNECTION_ID,
        delivery=delivery(STREAMED_SCALE),
    )
    transcription = TranscriptionScript(source=stream_line, first_delta_ms=20, per_word_ms=10)
    speech = SpeechScript(first_byte_ms=30, per_chunk_ms=20, chunk_bytes=4800)
    async with (
        FakeOpenAI(KEY, speech=speech, transcription=transcription) as fake,
        deployment(tmp_path, redis_server, emu, lambda _: streaming_config(fake)) as cluster,
    ):

        async def place(n: int) -> str:
            params = {"to": native_number(n), "message": GREETING, "mode": "conversation"}
            started = await cluster.rpc("voicecall.initiate", params, retry=False)
            return str(started["callId"])

        placed = list(await asyncio.gather(*(place(n) for n in range(STREAMED_CALLS))))

        async def streams_up() -> bool:
            return len(cluster.holders("stream")) >= STREAMED_CALLS * 3 // 4

        await wait_until(streams_up, 30)
        kill = await cluster.kill_and_restart(cluster.instances[1])
        records = await settle(cluster, placed)

        verdict = Verdict()
        await judge_both_ends(cluster, records, verdict, kill)
        verdict.counts["stream holder recorded"] = sum(1 for c in placed if c in kill.streams)
        verdict.counts["owned by the killed instance"] = sum(1 for c in placed if kill.owned(c))
        verdict.counts["streams on the killed instance"] = sum(
            1 for c in placed if kill.streamed(c)
        )
        if not kill.hit(placed, kill.streamed) or not kill.hit(placed, kill.owned):
            verdict.fail("the kill hit no live stream or no live owned call: it proved nothing")
        for call_id in placed:
            judge_stream(cluster, kill, call_id, records[call_id], verdict)
        conclude(cluster, verdict)
