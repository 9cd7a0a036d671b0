"""Plivo call lifecycles against docs/carriers.md §4: callback order and parameters, the XML
verbs, and signatures checked by the official SDK validator on every request."""

from __future__ import annotations

from tests.sim.plivo.app import AUTH_ID, FakeApp, kinds, running, sdk_call
from voice_call.sim.callee import CalleeScript

SPEAK_HANGUP = "<Response><Speak>Hello there</Speak><Hangup/></Response>"
STANDARD = {"CallUUID", "From", "To", "CallStatus", "Direction", "BillRate", "SessionStart"}
A_LEG = {"ALegUUID", "ALegRequestUUID", "RequestUUID"}


def all_signed(app: FakeApp) -> bool:
    return bool(app.received) and all(r.signature_ok for r in app.received)


async def test_answered_speak_then_hangup() -> None:
    app = FakeApp(replies={"/answer": SPEAK_HANGUP})
    async with running(app) as emu:
        request_uuid = await sdk_call(emu, app)
        call = await emu.wait_ended(request_uuid)
    assert kinds(emu) == ["ring", "answer", "hangup"]
    assert [r.path for r in app.received] == ["/ring", "/answer", "/hangup"]
    ring, answer, hangup = (r.params for r in app.received)
    assert ring["CallStatus"] == "ringing" and ring["Event"] == "Ring"
    assert answer["CallStatus"] == "in-progress" and answer["Event"] == "StartApp"
    assert answer["Direction"] == "outbound" and answer["ParentAuthID"] == AUTH_ID
    assert answer.keys() >= STANDARD | A_LEG
    # a single-destination call: one id for the request, the call and the A leg (the V3 vector)
    assert answer["RequestUUID"] == answer["CallUUID"] == answer["ALegUUID"] == request_uuid
    assert hangup["CallStatus"] == "completed" and hangup["Event"] == "Hangup"
    assert hangup["HangupCause"] == "NORMAL_CLEARING"
    assert (hangup["HangupCauseCode"], hangup["HangupSource"]) == ("4000", "Answer XML")
    assert {"Duration", "BillDuration", "StartTime", "AnswerTime", "EndTime", "TotalCost"} <= (
        hangup.keys()
    )
    assert hangup["RequestUUID"] == request_uuid
    assert call.callee.heard == ["Hello there"]
    assert call.status == "completed" and call.hangup_cause == "NORMAL_CLEARING"
    assert all_signed(app)
    assert all(
        {"X-Plivo-Signature-V3", "X-Plivo-Signature-V3-Nonce"} <= h.headers.keys()
        for h in emu.webhooks
    )


async def test_the_end_of_the_xml_ends_the_call() -> None:
    app = FakeApp(replies={"/answer": "<Response><Speak>Only this</Speak></Response>"})
    async with running(app) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    hangup = app.of("/hangup")[0].params
    assert (hangup["HangupCauseCode"], hangup["HangupCauseName"]) == (
        "4010",
        "End Of XML Instructions",
    )
    assert call.callee.heard == ["Only this"]


async def test_get_input_speech_posts_the_reply_to_action() -> None:
    app = FakeApp()
    app.replies["/answer"] = lambda _: (
        f'<Response><GetInput action="{app.url("/gather")}" inputType="speech">'
        "<Speak>How can I help?</Speak></GetInput><Speak>Nothing heard</Speak></Response>"
    )
    app.replies["/gather"] = "<Response><Speak>Let me check that</Speak><Hangup/></Response>"
    script = CalleeScript(replies=("I have a billing question",), reply_delay_ms=200)
    async with running(app, script=script) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert kinds(emu) == ["ring", "answer", "action", "hangup"]
    action = app.of("/gather")[0].params
    assert action["InputType"] == "speech"
    assert action["Speech"] == "I have a billing question"
    assert 0.0 < float(action["SpeechConfidenceScore"]) <= 1.0
    assert action["Digits"] == "" and action["CallStatus"] == "in-progress"
    assert action.keys() >= STANDARD | A_LEG
    assert call.callee.heard == ["How can I help?", "Let me check that"]
    assert call.callee.said == ["I have a billing question"]
    assert all_signed(app)


async def test_get_input_dtmf_posts_digits_without_the_finish_key() -> None:
    app = FakeApp()
    app.replies["/answer"] = lambda _: (
        f'<Response><GetInput action="{app.url("/keys")}" inputType="dtmf" numDigits="6">'
        "<Speak>Enter your PIN</Speak></GetInput></Response>"
    )
    async with running(app, dtmf_replies=("1234#",)) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    action = app.of("/keys")[0].params
    assert (action["InputType"], action["Digits"], action["Speech"]) == ("dtmf", "1234", "")
    assert call.callee.digits == ["1234#"]


async def test_get_input_without_input_moves_on_to_the_next_element() -> None:
    app = FakeApp()
    app.replies["/answer"] = lambda _: (
        f'<Response><GetInput action="{app.url("/gather")}" inputType="speech" '
        'executionTimeout="5"><Speak>Anyone there?</Speak></GetInput>'
        "<Speak>Goodbye</Speak></Response>"
    )
    async with running(app, script=CalleeScript(silent=True)) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert app.of("/gather") == []
    assert call.callee.heard == ["Anyone there?", "Goodbye"]


async def test_get_input_redirect_false_notifies_and_carries_on() -> None:
    app = FakeApp()
    app.replies["/answer"] = lambda _: (
        f'<Response><GetInput action="{app.url("/gather")}" inputType="speech" '
        'redirect="false"><Speak>Say something</Speak></GetInput>'
        "<Speak>Carrying on</Speak></Response>"
    )
    app.replies["/gather"] = "<Response><Speak>never run</Speak></Response>"
    async with running(app, script=CalleeScript(replies=("hi",), reply_delay_ms=50)) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert app.of("/gather")[0].params["Speech"] == "hi"
    assert call.callee.heard == ["Say something", "Carrying on"]


async def test_redirect_runs_the_xml_at_its_url() -> None:
    app = FakeApp()
    app.replies["/answer"] = lambda _: (
        f"<Response><Redirect>{app.url('/next')}</Redirect><Speak>skipped</Speak></Response>"
    )
    app.replies["/next"] = "<Response><Wait length='1'/><Speak>Moved</Speak></Response>"
    async with running(app) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert kinds(emu) == ["ring", "answer", "redirect", "hangup"]
    assert app.of("/next")[0].params["CallStatus"] == "in-progress"
    assert call.callee.heard == ["Moved"]


async def test_busy() -> None:
    app = FakeApp()
    async with running(app, script=CalleeScript(outcome="busy")) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert kinds(emu) == ["hangup"]  # no ring, and answer_url is never requested
    hangup = app.of("/hangup")[0].params
    assert (hangup["CallStatus"], hangup["HangupCause"]) == ("busy", "USER_BUSY")
    assert hangup["Duration"] == "0" and "AnswerTime" not in hangup
    assert call.status == "busy" and call.answered_at is None


async def test_no_answer_after_ring_timeout() -> None:
    app = FakeApp()
    async with running(app, script=CalleeScript(outcome="no-answer")) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app, ring_timeout=10))
    assert kinds(emu) == ["ring", "hangup"]
    hangup = app.of("/hangup")[0].params
    assert (hangup["CallStatus"], hangup["HangupCause"]) == ("no-answer", "NO_ANSWER")
    assert call.answered_at is None


async def test_slow_answer_beyond_ring_timeout_is_no_answer() -> None:
    app = FakeApp()
    script = CalleeScript(answer_delay_ms=30_000)
    async with running(app, script=script) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app, ring_timeout=5))
    assert call.status == "no-answer" and app.of("/answer") == []


async def test_failed_call() -> None:
    app = FakeApp()
    async with running(app, script=CalleeScript(outcome="failed")) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert kinds(emu) == ["hangup"]
    assert app.of("/hangup")[0].params["CallStatus"] == "failed" == call.status


async def test_callee_hangs_up_mid_call() -> None:
    app = FakeApp()
    app.replies["/answer"] = lambda _: (
        f'<Response><GetInput action="{app.url("/gather")}" inputType="speech">'
        "<Speak>Question one?</Speak></GetInput></Response>"
    )
    app.replies["/gather"] = "<Response><Speak>Thanks, and another thing</Speak></Response>"
    script = CalleeScript(replies=("sure",), reply_delay_ms=50, hangup_after_turns=1)
    async with running(app, script=script) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    hangup = app.of("/hangup")[0].params
    assert (hangup["HangupSource"], hangup["CallStatus"]) == ("Callee", "completed")
    assert call.callee.hung_up


async def test_inbound_call() -> None:
    app = FakeApp(replies={"/inbound": SPEAK_HANGUP})
    async with running(app, answer_path="/inbound") as emu:
        call = await emu.place_inbound("14155550123", "14155550100")
        await emu.wait_ended(call.id)
    assert [r.path for r in app.received] == ["/inbound", "/hangup"]
    answer, hangup = app.received[0].params, app.received[1].params
    assert (answer["Direction"], answer["CallStatus"], answer["Event"]) == (
        "inbound",
        "ringing",
        "StartApp",
    )
    assert (answer["From"], answer["To"], answer["CallUUID"]) == (
        "14155550123",
        "14155550100",
        call.id,
    )
    assert not A_LEG & answer.keys()  # [S] no A-leg ids on an inbound call
    assert hangup["Direction"] == "inbound" and hangup["CallStatus"] == "completed"
    assert call.callee.heard == ["Hello there"] and call.answered_at is not None
    assert all_signed(app)


async def test_inbound_rejected_by_hangup_before_answer() -> None:
    app = FakeApp(replies={"/inbound": '<Response><Hangup reason="busy"/></Response>'})
    async with running(app, answer_path="/inbound") as emu:
        call = await emu.place_inbound("14155550123", "14155550100")
        await emu.wait_ended(call.id)
    assert call.answered_at is None and call.status == "busy"
    assert app.of("/hangup")[0].params["HangupSource"] == "Answer XML"


async def test_answer_url_retried_then_fallback() -> None:
    app = FakeApp(failures={"/answer": [500, 503, 502]}, replies={"/fallback": SPEAK_HANGUP})
    async with running(app) as emu:
        call = await emu.wait_ended(
            await sdk_call(emu, app, fallback_url=app.url("/fallback")), timeout=10
        )
    statuses = [(h.kind, h.status_code) for h in emu.webhooks]
    assert statuses == [
        ("ring", 200),
        ("answer", 500),
        ("answer", 503),
        ("answer", 502),
        ("fallback", 200),
        ("hangup", 200),
    ]
    assert call.callee.heard == ["Hello there"]


async def test_unreachable_answer_url_ends_the_call() -> None:
    app = FakeApp(failures={"/answer": [404]})
    async with running(app) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert [h.kind for h in emu.webhooks] == ["ring", "answer", "hangup"]  # a 4xx is not retried
    assert app.of("/hangup")[0].params["HangupSource"] == "Error"
    assert call.status == "completed"


async def test_invalid_xml_ends_the_call() -> None:
    app = FakeApp(replies={"/answer": "<Speak>not in a Response</Speak>"})
    async with running(app) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app))
    assert app.of("/hangup")[0].params["HangupSource"] == "Error"
    assert call.extra["xml_errors"]


async def test_v2_signatures_when_selected() -> None:
    app = FakeApp(replies={"/answer": SPEAK_HANGUP}, version="v2")
    async with running(app, signature="v2") as emu:
        await emu.wait_ended(await sdk_call(emu, app))
    assert all_signed(app)
    assert all("X-Plivo-Signature-V2-Nonce" in h.headers for h in emu.webhooks)


async def test_get_methods_are_signed_over_the_query() -> None:
    app = FakeApp(replies={"/answer": SPEAK_HANGUP})
    async with running(app) as emu:
        request_uuid = await sdk_call(
            emu,
            app,
            answer_url=app.url("/answer?tenant=a1"),
            answer_method="GET",
            hangup_method="GET",
        )
        await emu.wait_ended(request_uuid)
    answer = app.of("/answer")[0]
    assert answer.method == "GET" and answer.params["tenant"] == "a1"
    assert answer.params["CallUUID"] == request_uuid
    assert app.of("/hangup")[0].method == "GET"
    assert all_signed(app)


async def test_time_limit_ends_an_answered_call() -> None:
    app = FakeApp(replies={"/answer": "<Response><Wait length='600'/></Response>"})
    async with running(app) as emu:
        call = await emu.wait_ended(await sdk_call(emu, app, time_limit=3))
    hangup = app.of("/hangup")[0].params
    assert hangup["HangupSource"] == "Plivo" and int(hangup["Duration"]) in (2, 3, 4)
    assert call.status == "completed"


async def test_voicemail_with_machine_detection_hangup() -> None:
    app = FakeApp(replies={"/answer": "<Response><Wait length='60'/></Response>"})
    async with running(app, script=CalleeScript(outcome="voicemail")) as emu:
        request_uuid = await sdk_call(
            emu,
            app,
            machine_detection="hangup",
            machine_detection_url=app.url("/machine"),
        )
        await emu.wait_ended(request_uuid)
    machine = app.of("/machine")[0].params
    assert (machine["Machine"], machine["IfMachine"], machine["Event"]) == (
        "true",
        "hangup",
        "MachineDetection",
    )
    assert kinds(emu) == ["ring", "answer", "machine", "hangup"]


async def test_distinct_request_and_call_uuids() -> None:
    app = FakeApp(replies={"/answer": SPEAK_HANGUP})
    async with running(app, same_request_and_call_uuid=False) as emu:
        request_uuid = await sdk_call(emu, app)
        call = await emu.wait_ended(request_uuid)  # a RequestUUID finds its call too
    answer = app.of("/answer")[0].params
    assert answer["RequestUUID"] == request_uuid != answer["CallUUID"] == call.id
    assert emu.requests[request_uuid] == call.id


async def test_hangup_by_callee_and_script_per_number() -> None:
    app = FakeApp(replies={"/answer": "<Response><Wait length='600'/></Response>"})
    scripts = {"14155550199": CalleeScript(answer_delay_ms=100)}
    async with running(app, script=lambda to: scripts.get(to, CalleeScript())) as emu:
        request_uuid = await sdk_call(emu, app)
        await emu.webhooks.wait_for(lambda hook: hook.kind == "answer")
        assert emu.hangup_by_callee(request_uuid)
        call = await emu.wait_ended(request_uuid)
    assert app.of("/hangup")[0].params["HangupSource"] == "Callee"
    assert call.callee.script.answer_delay_ms == 100
