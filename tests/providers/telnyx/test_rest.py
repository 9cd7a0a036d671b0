"""The Telnyx REST side of the provider, against a scripted transport: bodies, retries, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.providers.telnyx.stack import merge
from voice_call.clock import RealClock
from voice_call.config import parse_config
from voice_call.models import CallRecord, Direction, Mode
from voice_call.providers.base import DialRequest, ProviderError
from voice_call.providers.telnyx.provider import TelnyxProvider, build
from voice_call.providers.telnyx.rest import TelnyxRest
from voice_call.providers.telnyx.webhooks import decode_client_state
from voice_call.security.signatures import telnyx as signatures

API_KEY = "KEYsecret_do_not_leak_0123456789"
CALL_ID = "6f1c2b9e-4a7d-4e0f-9c3b-2d8e5f7a1b3c"
PID = "v3:abc_DEF-123"
OK = httpx.Response(200, json={"data": {"result": "ok"}})

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A transport that answers from a script and keeps every request it saw."""

    def __init__(self, *replies: httpx.Response | Exception) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if self.replies else OK
        if isinstance(reply, Exception):
            raise reply
        return reply

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) if r.content else {} for r in self.requests]

    def paths(self) -> list[str]:
        return [r.url.raw_path.decode() for r in self.requests]


def provider(tmp_path: Path, recorder: Recorder, **overrides: Any) -> TelnyxProvider:
    raw: dict[str, Any] = {
        "provider": "telnyx",
        "fromNumber": "+15550001000",
        "telnyx": {
            "apiKey": API_KEY,
            "connectionId": "conn-1",
            "publicKey": signatures.generate_keypair()[1],
        },
    }
    built = build(parse_config(merge(raw, overrides), env={}), RealClock(), tmp_path)
    built.rest = TelnyxRest(API_KEY, transport=httpx.MockTransport(recorder), retry_pause_s=0)
    built.set_webhook_url("https://example.test/voice/webhook")
    return built


def record(**changes: Any) -> CallRecord:
    base: dict[str, Any] = {
        "call_id": CALL_ID,
        "provider": "telnyx",
        "provider_call_id": PID,
        "direction": Direction.OUTBOUND,
        "mode": Mode.CONVERSATION,
        "from": "+15550001000",
        "to": "+15550002000",
        "started_at": 1.0,
    }
    return CallRecord.model_validate({**base, **changes})


def error(status: int, code: str, title: str, detail: str) -> httpx.Response:
    return httpx.Response(
        status, json={"errors": [{"code": code, "title": title, "detail": detail}]}
    )


async def test_dial_body_and_result(tmp_path: Path) -> None:
    recorder = Recorder(
        httpx.Response(200, json={"data": {"call_control_id": PID, "is_alive": False}})
    )
    telnyx = provider(tmp_path, recorder, ringTimeoutMs=2000)
    result = await telnyx.initiate_call(
        DialRequest(CALL_ID, "+15550001000", "+15550002000", "https://pub.example/hook", "notify")
    )
    await telnyx.close()
    assert result.provider_call_id == PID
    [sent] = recorder.requests
    assert sent.method == "POST" and sent.url.path == "/v2/calls"
    assert sent.url.host == "api.telnyx.com"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    body = recorder.bodies()[0]
    assert body["connection_id"] == "conn-1"
    assert (body["from"], body["to"]) == ("+15550001000", "+15550002000")
    assert body["webhook_url"] == "https://pub.example/hook"
    assert decode_client_state(body["client_state"]) == (CALL_ID, None)
    assert body["timeout_secs"] == 5  # 2 s asked, Telnyx's minimum is 5
    assert body["command_id"] == f"dial-{CALL_ID}"


async def test_dial_without_call_control_id_is_a_provider_error(tmp_path: Path) -> None:
    telnyx = provider(tmp_path, Recorder(httpx.Response(200, json={"data": {}})))
    with pytest.raises(ProviderError, match="no call_control_id"):
        await telnyx.initiate_call(DialRequest(CALL_ID, "+1555", "+1666", "", "notify"))
    await telnyx.close()


async def test_commands_go_to_the_call_path_with_unique_command_ids(tmp_path: Path) -> None:
    recorder = Recorder()
    telnyx = provider(tmp_path, recorder)
    call = record()
    await telnyx.speak(call, "One.")
    await telnyx.speak(call, "Two.")
    await telnyx.start_listening(call, "turn42")
    await telnyx.stop_listening(call)
    await telnyx.send_dtmf(call, "1,2P#")
    await telnyx.close()
    assert recorder.paths() == [
        f"/v2/calls/v3%3Aabc_DEF-123/actions/{action}"
        for action in ("speak", "speak", "transcription_start", "transcription_stop", "send_dtmf")
    ]
    bodies = recorder.bodies()
    ids = [b["command_id"] for b in bodies]
    assert len(set(ids)) == len(ids)
    assert bodies[0]["payload"] == "One." and bodies[0]["voice"] == "female"
    assert bodies[0]["language"] == "en-US"
    assert decode_client_state(bodies[2]["client_state"]) == (CALL_ID, "turn42")
    assert bodies[2]["language"] == "en" and bodies[2]["transcription_tracks"] == "inbound"
    assert bodies[4]["digits"] == "1w2w#"


async def test_voice_from_telnyx_block_and_from_tts(tmp_path: Path) -> None:
    recorder = Recorder()
    mapped = provider(tmp_path, recorder, tts={"providers": {"openai": {"voice": "nova"}}})
    await mapped.speak(record(), "Hi")
    await mapped.close()
    explicit = provider(
        tmp_path, recorder, telnyx={"voice": "Telnyx.KokoroTTS.af", "language": "de-DE"}
    )
    await explicit.speak(record(), "Hi")
    await explicit.close()
    bodies = recorder.bodies()
    assert bodies[0]["voice"] == "AWS.Polly.Salli-Neural"
    assert (bodies[1]["voice"], bodies[1]["language"]) == ("Telnyx.KokoroTTS.af", "de-DE")


async def test_text_longer_than_one_speak_is_said_in_order(tmp_path: Path) -> None:
    recorder = Recorder()
    telnyx = provider(tmp_path, recorder)
    sentences = [f"Sentence number {i} is here." for i in range(200)]
    await telnyx.speak(record(), " ".join(sentences))
    await telnyx.close()
    payloads = [b["payload"] for b in recorder.bodies()]
    assert len(payloads) == 2  # about 5 800 characters
    assert all(len(p) <= 3000 for p in payloads)
    assert " ".join(payloads) == " ".join(sentences)
    assert all(p.endswith(".") for p in payloads)


async def test_failures_name_status_code_and_detail_never_the_key(tmp_path: Path) -> None:
    telnyx = provider(
        tmp_path,
        Recorder(error(422, "10015", "Bad Request", "'voice' must be a string.")),
    )
    with pytest.raises(ProviderError) as caught:
        await telnyx.speak(record(), "Hi")
    await telnyx.close()
    message = str(caught.value)
    assert message == "Telnyx speak failed: HTTP 422 10015: Bad Request — 'voice' must be a string."
    assert API_KEY not in message


async def test_unauthorised_and_non_json_failures(tmp_path: Path) -> None:
    recorder = Recorder(
        error(401, "10009", "Authentication failed", "bad key"),
        httpx.Response(400, text="<html>nope</html>"),
    )
    telnyx = provider(tmp_path, recorder)
    with pytest.raises(ProviderError, match="HTTP 401 10009: Authentication failed"):
        await telnyx.stop_listening(record())
    with pytest.raises(ProviderError, match="HTTP 400: Bad Request"):
        await telnyx.stop_listening(record())
    await telnyx.close()


async def test_a_lost_or_failed_request_is_retried_once_with_the_same_command_id(
    tmp_path: Path,
) -> None:
    recorder = Recorder(httpx.ReadTimeout("slow"), httpx.Response(503, text="busy"), OK)
    telnyx = provider(tmp_path, recorder)
    with pytest.raises(ProviderError, match="HTTP 503"):
        await telnyx.speak(record(), "Hi")  # timeout, then 503: two tries, then the error
    await telnyx.speak(record(), "Again")  # the third reply: OK at once
    await telnyx.close()
    ids = [b["command_id"] for b in recorder.bodies()]
    assert ids[0] == ids[1] != ids[2]


async def test_unreachable_host_is_a_clear_provider_error(tmp_path: Path) -> None:
    refused = httpx.ConnectError("refused")
    telnyx = provider(tmp_path, Recorder(refused, refused))
    with pytest.raises(ProviderError, match=r"cannot reach api\.telnyx\.com: ConnectError"):
        await telnyx.answer(record(direction=Direction.INBOUND))
    await telnyx.close()


@pytest.mark.parametrize(
    "reply",
    [
        error(404, "10005", "Resource not found", "Call not found"),
        error(422, "90018", "Call has already ended", "no longer active"),
    ],
)
async def test_hangup_of_an_ended_call_is_fine(tmp_path: Path, reply: httpx.Response) -> None:
    recorder = Recorder(reply)
    telnyx = provider(tmp_path, recorder)
    await telnyx.hangup(record(), "hangup-bot")
    await telnyx.close()
    assert recorder.paths()[0].endswith("/actions/hangup")


async def test_hangup_other_failures_are_raised(tmp_path: Path) -> None:
    telnyx = provider(tmp_path, Recorder(error(403, "10010", "Forbidden", "no")))
    with pytest.raises(ProviderError, match="403"):
        await telnyx.hangup(record(), "hangup-bot")
    await telnyx.close()


async def test_refused_inbound_is_rejected_and_falls_back_to_hangup(tmp_path: Path) -> None:
    recorder = Recorder(OK, error(422, "10015", "Bad Request", "not parked"), OK)
    telnyx = provider(tmp_path, recorder)
    inbound = record(direction=Direction.INBOUND)
    await telnyx.hangup(inbound, "inbound-policy")
    await telnyx.hangup(inbound, "inbound-policy")  # reject refused: hang up instead
    await telnyx.close()
    actions = [p.rsplit("/", 1)[-1] for p in recorder.paths()]
    assert actions == ["reject", "reject", "hangup"]
    assert recorder.bodies()[0]["cause"] == "CALL_REJECTED"


async def test_answer_sets_client_state(tmp_path: Path) -> None:
    recorder = Recorder()
    telnyx = provider(tmp_path, recorder)
    await telnyx.answer(record(direction=Direction.INBOUND))
    await telnyx.close()
    assert recorder.paths() == ["/v2/calls/v3%3Aabc_DEF-123/actions/answer"]
    assert decode_client_state(recorder.bodies()[0]["client_state"]) == (CALL_ID, None)


async def test_no_call_control_id_yet(tmp_path: Path) -> None:
    recorder = Recorder()
    telnyx = provider(tmp_path, recorder)
    with pytest.raises(ProviderError, match="no call_control_id"):
        await telnyx.speak(record(provider_call_id=None), "Hi")
    await telnyx.hangup(record(provider_call_id=None), "hangup-bot")  # nothing to hang up
    await telnyx.close()
    assert recorder.requests == []


async def test_redirects_are_not_followed(tmp_path: Path) -> None:
    recorder = Recorder(httpx.Response(307, headers={"location": "https://evil.example/"}))
    telnyx = provider(tmp_path, recorder)
    with pytest.raises(ProviderError, match="HTTP 307"):
        await telnyx.speak(record(), "Hi")
    await telnyx.close()
    assert len(recorder.requests) == 1


async def test_api_base_url_is_configurable(tmp_path: Path) -> None:
    rest = TelnyxRest(API_KEY, "http://127.0.0.1:9/v2/")
    assert str(rest._client.base_url) == "http://127.0.0.1:9/v2/"
    await rest.close()
