"""GET /metrics: Prometheus text with calls by state, webhooks by result, turn histograms."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.server.stack import Rpc
from tests.support import wait_until
from voice_call.models import TurnKind
from voice_call.runtime import Runtime
from voice_call.server.metrics import Metrics, metrics_for


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def scrape(
    http: httpx.AsyncClient, runtime: Runtime
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await http.get("/metrics", headers={"Authorization": f"Bearer {runtime.rpc_token}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


async def test_metrics_need_the_bearer_token(vc_http: httpx.AsyncClient) -> None:
    response = await vc_http.get("/metrics")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert (
        await vc_http.get("/metrics", headers={"Authorization": "Bearer nope"})
    ).status_code == 401


async def test_calls_webhooks_and_turn_latency(
    vc_http: httpx.AsyncClient, vc_runtime: Runtime, rpc: Rpc
) -> None:
    before = await scrape(vc_http, vc_runtime)
    assert before[("voicecall_calls", (("state", "listening"),))] == 0
    params = {"to": "+15555550123", "message": "Hi", "mode": "conversation"}
    reply = await rpc("voicecall.initiate", params)
    call_id = reply["result"]["callId"]

    async def three_replies() -> bool:
        rec = await vc_runtime.store.get(call_id)
        return rec is not None and sum(t.kind == TurnKind.REPLY for t in rec.latency) == 3

    await wait_until(three_replies)  # the echo responder answers the callee's three lines
    path = vc_runtime.config.serve.path
    ok = await vc_http.post(
        path, json={"event": {"type": "call.dtmf", "callId": call_id, "digits": "1"}}
    )
    assert ok.status_code == 200
    assert (await vc_http.post(path, content=b"{not json")).status_code == 400
    after = await scrape(vc_http, vc_runtime)
    assert after[("voicecall_calls", (("state", "listening"),))] == 1
    assert after[("voicecall_calls", (("state", "ringing"),))] == 0
    assert after[("voicecall_webhooks_total", (("result", "ok"),))] == 1
    assert after[("voicecall_webhooks_total", (("result", "bad-request"),))] == 1
    assert after[("voicecall_turns_total", (("kind", "reply"), ("outcome", "spoken")))] == 3
    v2v = (("component", "voice_to_voice"), ("kind", "reply"))
    assert after[("voicecall_turn_latency_seconds_count", v2v)] == 3
    # echo replies in well under a second: every observation is in the 1 s bucket
    assert (
        after[
            ("voicecall_turn_latency_seconds_bucket", (*v2v[:1], ("kind", "reply"), ("le", "1.0")))
        ]
        == 3
    )
    await rpc("voicecall.end", {"callId": call_id})
    ended = await scrape(vc_http, vc_runtime)
    assert ended[("voicecall_calls", (("state", "listening"),))] == 0


def test_each_runtime_has_its_own_registry(vc_runtime: Runtime) -> None:
    first = metrics_for(vc_runtime)
    assert metrics_for(vc_runtime) is first
    assert vc_runtime.manager.turn_listeners.count(first.turn) == 1
    other = Metrics()
    first.webhook(429)
    first.webhook(599)
    text = first.render().decode()
    assert 'voicecall_webhooks_total{result="throttled"} 1.0' in text
    assert 'voicecall_webhooks_total{result="599"} 1.0' in text
    assert "throttled" not in other.render().decode()
