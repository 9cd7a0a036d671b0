"""GET /metrics: Prometheus text exposition (prometheus-client), bearer token as for RPC.

- `voicecall_calls{state}`: calls not yet ended, by state (read from the store at scrape time,
  so it is right after a restart and across instances sharing a store);
- `voicecall_webhooks_total{result}`: carrier webhook requests by answer (ok, unauthorized,
  bad-request, throttled, too-large, timeout, retry-later, ...), counted by the webhook route;
- `voicecall_turn_latency_seconds{kind,component}`: per-turn histograms — for auto-replies
  voice_to_voice (final words received → first reply sent to the carrier), responder_first_token,
  responder_total, total (+ endpointing and tts_first_byte where we run STT/TTS); for `continue`
  turns speak, listen_wait and total;
- `voicecall_turns_total{kind,outcome}`: turns by how they ended (spoken, interrupted, apology…).

Each Runtime gets its own registry (no process-wide default registry), found with
`metrics_for(runtime)` by both the route and the webhook counter hook.
"""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from voice_call.models import CallRecord, CallState, TurnLatency
from voice_call.runtime import Runtime
from voice_call.server.auth import UNAUTHORIZED, authorized
from voice_call.server.responses import json_error

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)
WEBHOOK_RESULTS = {
    200: "ok",
    400: "bad-request",
    401: "unauthorized",
    408: "timeout",
    413: "too-large",
    429: "throttled",
    503: "retry-later",
}
# TurnLatency field → histogram component label.
COMPONENTS = {
    "voice_to_voice_ms": "voice_to_voice",
    "endpointing_ms": "endpointing",
    "responder_first_token_ms": "responder_first_token",
    "responder_total_ms": "responder_total",
    "tts_first_byte_ms": "tts_first_byte",
    "speak_ms": "speak",
    "listen_wait_ms": "listen_wait",
    "total_ms": "total",
}
LIVE_STATES = [s for s in CallState if not s.terminal]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Gauge(
            "voicecall_calls",
            "Calls not yet ended, by state.",
            ["state"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "voicecall_webhooks",
            "Carrier webhook requests, by the answer they got.",
            ["result"],
            registry=self.registry,
        )
        self.turns = Counter(
            "voicecall_turns",
            "Conversation turns, by kind (reply, continue) and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.turn_latency = Histogram(
            "voicecall_turn_latency_seconds",
            "Per-turn latency by component, measured where audio meets the carrier.",
            ["kind", "component"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def webhook(self, status_code: int) -> None:
        self.webhooks.labels(WEBHOOK_RESULTS.get(status_code, str(status_code))).inc()

    def turn(self, _: CallRecord, figures: TurnLatency) -> None:
        kind = figures.kind.value
        self.turns.labels(kind, figures.outcome or "completed").inc()
        for field, component in COMPONENTS.items():
            value = getattr(figures, field)
            if isinstance(value, int | float):
                self.turn_latency.labels(kind, component).observe(max(0.0, value) / 1000)

    def set_calls(self, active: list[CallRecord]) -> None:
        counts = dict.fromkeys(LIVE_STATES, 0)
        for record in active:
            counts[record.state] = counts.get(record.state, 0) + 1
        for state, count in counts.items():
            self.calls.labels(state.value).set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


_BY_RUNTIME: weakref.WeakKeyDictionary[Runtime, Metrics] = weakref.WeakKeyDictionary()


def metrics_for(runtime: Runtime) -> Metrics:
    """The runtime's metrics, created (and subscribed to its turns) on first use."""
    metrics = _BY_RUNTIME.get(runtime)
    if metrics is None:
        metrics = _BY_RUNTIME[runtime] = Metrics()
        runtime.manager.turn_listeners.append(metrics.turn)
    return metrics


class MetricsRoute:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.metrics = metrics_for(runtime)

    async def handle(self, request: Request) -> Response:
        if not authorized(request, self.runtime.rpc_token):
            return json_error(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
        try:
            self.metrics.set_calls(await self.runtime.manager.active())
        except Exception:
            return json_error(503, "the call store is unavailable")
        # The exposition format the scraper asks for (Accept); classic text 0.0.4 by default.
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(self.metrics.registry), 200, headers={"Content-Type": content_type})
