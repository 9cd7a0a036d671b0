"""The Plivo provider's REST side against a scripted transport: requests, errors, fallbacks."""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from voice_call.clock import RealClock
from voice_call.config import parse_config
from voice_call.models import CallRecord, Direction, Mode, Speaker, TranscriptEntry
from voice_call.providers.base import DialRequest, ProviderError
from voice_call.providers.plivo.provider import PlivoProvider
from voice_call.providers.plivo.rest import PlivoRest
from voice_call.providers.plivo.urls import decode_text

AUTH_ID = "MAPLIVOPROVIDER00001"
TOKEN = "secret-token-never-shown"
HOOK = "https://voice.example.com/voice/webhook"
Handler = Callable[[httpx.Request], httpx.Response]


@asynccontextmanager
async def provider(handler: Handler, **overrides: Any) -> AsyncIterator[PlivoProvider]:
    block = {"authId": AUTH_ID, "authToken": TOKEN, **overrides.pop("plivo", {})}
    raw = {"provider": "plivo", "fromNumber": "+15550001000", "plivo": block, **overrides}
    config = parse_config(raw, env={})
    rest = PlivoRest(AUTH_ID, TOKEN, "https://plivo.test", transport=httpx.MockTransport(handler))
    built = PlivoProvider(config, RealClock(), rest)
    built.set_webhook_url(HOOK)
    try:
        yield built
    finally:
        await built.close()


def record(**changes: Any) -> CallRecord:
    base: dict[str, Any] = {
        "call_id": "c-1",
        "provider": "plivo",
        "provider_call_id": "call-uuid",
        "direction": Direction.OUTBOUND,
        "mode": Mode.CONVERSATION,
        "from_number": "+15550001000",
        "to_number": "+15550002000",
        "started_at": time.time(),
        "answered_at": time.time(),
    }
    return CallRecord(**(base | changes))


class Log(list[httpx.Request]):
    def paths(self) -> list[tuple[str, str]]:
        return [(r.method, r.url.path) for r in self]


def script(*answers: httpx.Response) -> tuple[Handler, Log]:
    log = Log()
    queue = list(answers)

    def handle(req: httpx.Request) -> httpx.Response:
        log.append(req)
        return queue.pop(0) if queue else httpx.Response(204)

    return handle, log


def body(req: httpx.Request) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(req.content)
    return data


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def test_create_call_sends_our_urls_and_plivo_numbers() -> None:
    handle, log = script(
        httpx.Response(201, json={"request_uuid": "req-1", "message": "call fired"})
    )
    async with provider(handle, ringTimeoutMs=25_500, maxDurationSeconds=600) as plivo:
        dial = DialRequest("c-1", "+15550001000", "+15550002000", HOOK, "conversation", "Hi")
        result = await plivo.initiate_call(dial)
    assert result.provider_call_id == "req-1"
    (req,) = log
    assert (req.method, str(req.url)) == ("POST", f"https://plivo.test/v1/Account/{AUTH_ID}/Call/")
    assert (
        req.headers["authorization"]
        == "Basic " + base64.b64encode(f"{AUTH_ID}:{TOKEN}".encode()).decode()
    )
    sent = body(req)
    assert (sent["from"], sent["to"]) == ("15550001000", "15550002000")
    assert sent["ring_timeout"] == 26 and "hangup_on_ring" not in sent
    assert sent["time_limit"] == 660
    seen: set[str] = set()
    for name, flow in (("answer_url", "answer"), ("ring_url", "ring"), ("hangup_url", "hangup")):
        ours = query(sent[name])
        seen.add(ours.pop("n"))  # each URL is unique: a retry keeps it, another request not
        assert ours == {"provider": "plivo", "flow": flow, "callId": "c-1"}
        assert sent[name].startswith(HOOK) and sent[name.replace("url", "method")] == "POST"
    assert len(seen) == 3


async def test_notify_carries_its_message_and_refuses_one_too_long() -> None:
    handle, log = script(httpx.Response(201, json={"request_uuid": ["req-1", "req-2"]}))
    async with provider(handle, plivo={"voice": "alloy", "language": "en-GB"}) as plivo:
        dial = DialRequest("c-1", "+15550001000", "+15550002000", HOOK, "notify", "Bye & <now>")
        assert (await plivo.initiate_call(dial)).provider_call_id == "req-1"
        answer = query(body(log[0])["answer_url"])
        assert answer["flow"] == "notify" and decode_text(answer["say"]) == "Bye & <now>"
        assert (answer["voice"], answer["lang"]) == ("Polly.Joanna", "en-GB")
        noise = base64.b64encode(random.Random(6).randbytes(6000)).decode()  # incompressible
        with pytest.raises(ProviderError, match="too long"):
            await plivo.initiate_call(
                DialRequest("c-2", "+15550001000", "+15550002000", HOOK, "notify", noise)
            )
    assert len(log) == 1  # nothing dialled for the refused one


async def test_errors_name_the_status_and_plivo_text_never_the_token() -> None:
    handle, _ = script(httpx.Response(400, json={"api_id": "a", "error": "invalid destination"}))
    async with provider(handle) as plivo:
        dial = DialRequest("c-1", "+15550001000", "+15550002000", HOOK, "notify", "Hi")
        with pytest.raises(ProviderError) as caught:
            await plivo.initiate_call(dial)
    message = str(caught.value)
    assert "HTTP 400" in message and "invalid destination" in message
    assert TOKEN not in message and AUTH_ID not in message

    def down(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    async with provider(down) as plivo:
        with pytest.raises(ProviderError, match=r"could not reach plivo\.test \(ConnectError\)"):
            await plivo.speak(record(), "Hello")


async def test_hangup_falls_back_to_cancelling_the_request_from_its_alias() -> None:
    handle, log = script(httpx.Response(404, json={"error": "not found"}), httpx.Response(204))
    async with provider(handle) as plivo:
        ringing = record(answered_at=None, metadata={"providerCallIdAliases": ["req-1"]})
        await plivo.hangup(ringing, "hangup-bot")
    assert log.paths() == [
        ("DELETE", f"/v1/Account/{AUTH_ID}/Call/call-uuid/"),
        ("DELETE", f"/v1/Account/{AUTH_ID}/Request/req-1/"),
    ]
    gone, log = script(*[httpx.Response(404, json={"error": "not found"})] * 3)
    async with provider(gone) as plivo:
        await plivo.hangup(record(metadata={"providerCallIdAliases": ["req-1"]}), "hangup-bot")
    assert len(log) == 3  # call, request alias, the id itself: all over already, no error
    broken, _ = script(httpx.Response(500, json={"error": "oops"}))
    async with provider(broken) as plivo:
        with pytest.raises(ProviderError, match="HTTP 500: oops"):
            await plivo.hangup(record(), "hangup-bot")


async def test_a_refused_inbound_call_is_hung_up_by_the_answer_xml_not_rest() -> None:
    handle, log = script()
    async with provider(handle) as plivo:
        inbound = record(direction=Direction.INBOUND, answered_at=None)
        await plivo.hangup(inbound, "inbound-policy")
    assert log == []


async def test_speak_and_listen_transfer_the_a_leg_with_the_words_in_the_url() -> None:
    handle, log = script()
    async with provider(handle) as plivo:
        call = record()
        await plivo.speak(call, "Is 3pm OK?")
        now = time.time()
        said = call.model_copy(
            update={"transcript": [TranscriptEntry(at=now, speaker=Speaker.BOT, text="Is 3pm OK?")]}
        )
        await plivo.start_listening(said, "tok-1")
        stale = said.model_copy(
            update={"transcript": [TranscriptEntry(at=now - 60, speaker=Speaker.BOT, text="Old")]}
        )
        await plivo.start_listening(stale, "tok-2")
        answered = said.model_copy(
            update={
                "transcript": [
                    *said.transcript,
                    TranscriptEntry(at=now, speaker=Speaker.USER, text="Yes"),
                ]
            }
        )
        await plivo.start_listening(answered, None)
    speak, listen, old, after_answer = (body(r) for r in log)
    assert all(r.url.path == f"/v1/Account/{AUTH_ID}/Call/call-uuid/" for r in log)
    assert speak["legs"] == "aleg" and speak["aleg_method"] == "POST"
    assert query(speak["aleg_url"])["flow"] == "speak"
    assert decode_text(query(speak["aleg_url"])["say"]) == "Is 3pm OK?"
    first = query(listen["aleg_url"])
    assert (first["flow"], first["turnToken"], decode_text(first["say"])) == (
        "listen",
        "tok-1",
        "Is 3pm OK?",
    )
    assert "say" not in query(old["aleg_url"]) and "say" not in query(after_answer["aleg_url"])
    assert "turnToken" not in query(after_answer["aleg_url"])


async def test_stop_listening_tolerates_an_ended_call_and_dtmf_uses_plivo_pauses() -> None:
    handle, log = script(httpx.Response(404, json={"error": "not found"}), httpx.Response(202))
    async with provider(handle) as plivo:
        await plivo.stop_listening(record())
        await plivo.send_dtmf(record(), "1p2,3P#")
    assert log.paths()[1] == ("POST", f"/v1/Account/{AUTH_ID}/Call/call-uuid/DTMF/")
    assert body(log[1]) == {"digits": "1w2w3W#", "leg": "aleg"}
    async with provider(handle) as plivo:
        with pytest.raises(ProviderError, match="CallUUID"):
            await plivo.speak(record(provider_call_id=None), "Hi")
        with pytest.raises(ProviderError, match="not a call or request id"):
            await plivo.speak(record(provider_call_id="../../Call"), "Hi")


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([httpx.Response(200, json={"call_status": "in-progress"})], ("in-progress", False, False)),
        ([httpx.Response(200, json={"call_status": "ringing"})], ("ringing", False, False)),
        (
            [httpx.Response(404, json={}), httpx.Response(200, json={"hangup_cause_code": 3000})],
            ("busy", True, False),
        ),
        (
            [httpx.Response(404, json={}), httpx.Response(200, json={"hangup_cause_code": 4000})],
            ("completed", True, False),
        ),
        (
            [httpx.Response(404, json={}), httpx.Response(200, json={"hangup_cause_code": 2010})],
            ("failed", True, False),
        ),
        ([httpx.Response(404, json={}), httpx.Response(404, json={})], ("not-found", True, False)),
    ],
)
async def test_status_for_restore(
    answers: list[httpx.Response], expected: tuple[str, bool, bool]
) -> None:
    handle, log = script(*answers)
    async with provider(handle) as plivo:
        status = await plivo.get_call_status("call-uuid")
    assert (status.status, status.terminal, status.unknown) == expected
    assert log[0].url.params["status"] == "live"


async def test_status_is_unknown_on_a_transient_error() -> None:
    handle, _ = script(httpx.Response(503, text="busy"))
    async with provider(handle) as plivo:
        status = await plivo.get_call_status("call-uuid")
    assert status.unknown and not status.terminal and "HTTP 503" in status.status


async def test_sentences_of_a_streamed_reply_are_said_together_not_cut_off() -> None:
    handle, log = script()
    now = time.time()

    def said(*lines: tuple[float, str, Speaker]) -> CallRecord:
        entries = [TranscriptEntry(at=now - ago, speaker=who, text=t) for ago, t, who in lines]
        return record(transcript=entries)

    bot, user = Speaker.BOT, Speaker.USER
    async with provider(handle) as plivo:
        # two sentences handed over 0.2 s apart, the third now: one document says all three
        await plivo.speak(said((30, "Hi.", bot), (20, "Hello", user), (0.3, "One.", bot)), "Two.")
        reply = said((20, "Hello", user), (0.3, "One.", bot), (0.1, "Two.", bot))
        await plivo.speak(reply, "Three.")
        # a line long finished is not said again; one under way is (from its start)
        await plivo.speak(said((9, "Old news.", bot), (1.2, "Still going on.", bot)), "New.")
    texts = [decode_text(query(body(r)["aleg_url"])["say"]) for r in log]
    assert texts == ["One. Two.", "One. Two. Three.", "Still going on. New."]
