"""Plivo conversations over a `<Stream>`: our server, the Plivo emulator and fake OpenAI.

With `streaming.enabled` a conversation's answer XML is a bidirectional `<Stream>` to our media
WebSocket: the greeting and replies reach the callee as µ-law audio from our TTS (the fake
OpenAI speech endpoint), paced at 20 ms, and what the callee says comes back through the fake
realtime transcription, which pairs each committed stretch of audio with the line the
emulator says it spoke. No transfer, Speak or GetInput is used once the call is answered.
The emulator runs in real time here: its 20 ms ticks must match our pacing for the callee's
turn-taking (and our cadence measurement) to mean anything.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.providers.plivo.stack import (
    APP_NUMBER,
    AUTH_ID,
    CALLEE,
    CALLER,
    PlivoStack,
    plivo_stack,
)
from tests.providers.streaming_support import KEY, CalleeLines, said_via_stream, streaming_config
from tests.support import merge, wait_until
from voice_call.audio.g711 import FRAME_BYTES
from voice_call.media.session import MediaSession
from voice_call.models import CallRecord, CallState, Speaker
from voice_call.sim.callee import CalleeScript
from voice_call.sim.common import EmulatedCall
from voice_call.sim.openai import FakeOpenAI, SpeechScript, TranscriptionScript
from voice_call.sim.plivo.stream import StreamLog

GREETING = "Hello, this is the clinic."
LINE = "Tuesday works for me."
BARGE_IN_S = 0.040  # our outbound audio stops this soon after the caller starts talking


class SpeechStarts:
    """The session's STT listener, noting when the caller started talking (then passing on)."""

    def __init__(self, session: MediaSession) -> None:
        self.session = session
        self.at: list[float] = []

    def on_speech_started(self) -> None:
        self.at.append(time.monotonic())
        self.session.on_speech_started()

    def on_partial(self, text: str) -> None:
        self.session.on_partial(text)

    def on_final(self, text: str) -> None:
        self.session.on_final(text)

    def on_error(self, message: str, fatal: bool) -> None:
        self.session.on_error(message, fatal)


def callee(*replies: str, reply_delay_ms: int = 300) -> CalleeScript:
    return CalleeScript(answer_delay_ms=200, replies=replies, reply_delay_ms=reply_delay_ms)


@asynccontextmanager
async def streaming_stack(
    tmp_path: Path, script: CalleeScript, **config: Any
) -> AsyncIterator[tuple[PlivoStack, FakeOpenAI]]:
    source = CalleeLines(said_via_stream)
    transcription = TranscriptionScript(source=source, first_delta_ms=20, per_word_ms=10)
    speech = SpeechScript(first_byte_ms=30, per_chunk_ms=20, chunk_bytes=4800)
    async with (
        FakeOpenAI(KEY, speech=speech, transcription=transcription) as fake,
        plivo_stack(
            tmp_path, script, time_scale=1.0, config=merge(streaming_config(fake), config)
        ) as stack,
    ):
        source.calls = lambda: stack.emulator.calls.values()
        yield stack, fake


async def start_conversation(stack: PlivoStack, message: str = GREETING) -> str:
    started = await stack.call(
        "voicecall.initiate", to=CALLEE, message=message, mode="conversation"
    )
    return str(started["callId"])


async def live_session(stack: PlivoStack, call_id: str) -> MediaSession:
    async def streaming() -> bool:
        return stack.runtime.media.get(call_id) is not None

    await wait_until(streaming)
    session = stack.runtime.media.get(call_id)
    assert session is not None
    return session


async def heard_turns(call: EmulatedCall, count: int, timeout: float = 10.0) -> None:
    """Wait until the callee has heard `count` turns of our audio."""

    async def heard() -> bool:
        return len(call.callee.heard) >= count

    await wait_until(heard, timeout)


def texts(record: CallRecord) -> list[str]:
    return [entry.text for entry in record.transcript]


def arrivals(log: StreamLog, event: str) -> list[float]:
    return [at for name, at in zip(log.received, log.received_at, strict=True) if name == event]


def stream_element(body: str) -> ET.Element:
    root = ET.fromstring(body)
    assert [child.tag for child in root] == ["Stream"]
    return root[0]


def assert_stream_xml(body: str, port: int) -> None:
    """The answer XML: a bidirectional µ-law stream to our media route, a token in its URL."""
    stream = stream_element(body)
    assert stream.attrib == {
        "bidirectional": "true",
        "keepCallAlive": "true",
        "contentType": "audio/x-mulaw;rate=8000",
        "audioTrack": "inbound",
        "streamTimeout": str(300 + 60),  # maxDurationSeconds, plus the carrier's margin
    }
    url = urlsplit((stream.text or "").strip())
    assert (url.scheme, url.netloc, url.path) == ("ws", f"127.0.0.1:{port}", "/voice/stream")
    assert parse_qs(url.query)["token"][0]


def assert_no_native_speech(stack: PlivoStack, call_uuid: str) -> None:
    """Nothing went through Plivo's own voice: no transfer, and no XML that speaks or listens."""
    assert stack.hooks("transfer", call_uuid) == []
    assert stack.hooks("action", call_uuid) == []
    for hook in stack.hooks(None, call_uuid):
        assert "<Speak" not in hook.response_body and "<GetInput" not in hook.response_body


async def test_a_streamed_conversation_speaks_and_listens_over_the_stream(
    tmp_path: Path,
) -> None:
    async with streaming_stack(tmp_path, callee(LINE)) as (stack, _fake):
        call_id = await start_conversation(stack)
        record = await stack.wait_record(
            call_id, lambda r: texts(r) == [GREETING, LINE, f"You said: {LINE}"], timeout=20
        )
        carrier = stack.carrier_call(record)
        await heard_turns(carrier, 2)  # the greeting, then the echoed reply
        assert [e.speaker for e in record.transcript] == [Speaker.BOT, Speaker.USER, Speaker.BOT]
        # the stream carried the audio both ways
        assert carrier.extra["said_via_stream"] == [LINE]
        audio = carrier.extra["heard_audio"]
        assert audio and len(audio) % FRAME_BYTES == 0
        assert all(turn.startswith("[audio ") for turn in carrier.callee.heard)
        assert_no_native_speech(stack, carrier.id)
        # the answer XML streamed the call; its start frame named the CallUUID, not the
        # RequestUUID we were given at dial (kept as an alias)
        assert_stream_xml(stack.hooks("answer", carrier.id)[0].response_body, stack.port)
        assert record.provider_call_id == carrier.id
        assert record.metadata["providerCallIdAliases"] == [carrier.extra["request_uuid"]]
        [log] = carrier.extra["streams"]
        assert {"playAudio", "checkpoint"} <= set(log.received) and log.checkpoints
        await stack.call("voicecall.end", callId=call_id)
        ended = await stack.wait_ended(call_id)
        assert ended.end_reason == CallState.HANGUP_BOT
        await stack.emulator.wait_ended(carrier.id)
        assert log.closed_by == "call"


async def test_greeting_audio_arrives_in_20_ms_frames(tmp_path: Path) -> None:
    greeting = "Hello, this is the clinic calling about your appointment next Tuesday morning."
    async with streaming_stack(tmp_path, callee()) as (stack, _fake):
        call_id = await start_conversation(stack, greeting)
        await live_session(stack, call_id)
        carrier = stack.carrier_call(await stack.record(call_id))
        await heard_turns(carrier, 1)  # the greeting played out, and the line went quiet
        [log] = carrier.extra["streams"]
        plays = arrivals(log, "playAudio")
        assert len(plays) >= 50  # about 2.5 s of speech at speed 2.5
        assert set(log.audio_sizes) == {FRAME_BYTES}  # every frame is 20 ms of µ-law
        gaps_ms = sorted((later - earlier) * 1000 for earlier, later in itertools.pairwise(plays))
        assert 15 <= statistics.median(gaps_ms) <= 25
        assert gaps_ms[int(len(gaps_ms) * 0.95)] <= 40  # p95: no bursts, no long stalls
        mean_ms = (plays[-1] - plays[0]) * 1000 / (len(plays) - 1)
        assert 18 <= mean_ms <= 23  # one absolute clock: no drift over the greeting
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


async def test_the_caller_barging_in_stops_our_audio_at_once(tmp_path: Path) -> None:
    long_text = " ".join(f"Sentence number {n} is here to take a while to say." for n in range(6))
    # The callee answers the greeting 1.2 s after it ends: over the long line we start then.
    async with streaming_stack(tmp_path, callee(LINE, reply_delay_ms=1200)) as (stack, _fake):
        call_id = await start_conversation(stack)
        session = await live_session(stack, call_id)
        starts = SpeechStarts(session)
        session.stt.listener = starts
        record = await stack.record(call_id)
        carrier = stack.carrier_call(record)
        await heard_turns(carrier, 1)
        cut = await stack.call("voicecall.speak", callId=call_id, message=long_text)
        assert cut  # returned once the caller cut it off
        record = await stack.wait_record(
            call_id, lambda r: f"You said: {LINE}" in texts(r), timeout=20
        )
        [log] = carrier.extra["streams"]
        assert starts.at and session.barge_ins >= 1 and log.cleared >= 1
        began = starts.at[0]
        plays = arrivals(log, "playAudio")
        assert [t for t in plays if began - 0.1 < t < began]  # we were talking over them
        [cleared_at, *_] = [t for t in arrivals(log, "clearAudio") if t >= began]
        assert cleared_at - began <= BARGE_IN_S
        # no more of the long line after that (the echoed reply comes seconds later)
        assert [t for t in plays if began + BARGE_IN_S < t < began + 1.0] == []
        # the transcript keeps what the caller heard of the long line, not all of it
        heard = [e for e in record.transcript if e.speaker == Speaker.BOT and e.text != GREETING]
        assert long_text not in texts(record)
        assert long_text.startswith(heard[0].text) and 0 < len(heard[0].text) < len(long_text)
        assert texts(record)[-2:] == [LINE, f"You said: {LINE}"]
        assert carrier.extra["said_via_stream"] == [LINE]
        assert_no_native_speech(stack, carrier.id)
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)


async def test_an_inbound_call_is_answered_onto_the_stream(tmp_path: Path) -> None:
    greeting = "Thanks for calling the clinic."
    routes = {APP_NUMBER: {"inboundGreeting": greeting}}
    async with streaming_stack(tmp_path, callee(LINE), inboundPolicy="open", numbers=routes) as (
        stack,
        _fake,
    ):
        carrier = await stack.emulator.place_inbound(CALLER.lstrip("+"), APP_NUMBER.lstrip("+"))

        store = stack.runtime.store

        async def registered() -> bool:
            return await store.find_by_provider_call_id("plivo", carrier.id) is not None

        await wait_until(registered)
        found = await store.find_by_provider_call_id("plivo", carrier.id)
        assert found is not None
        record = await stack.wait_record(
            found.call_id,
            lambda r: texts(r) == [greeting, LINE, f"You said: {LINE}"],
            timeout=20,
        )
        # accepted: the answer URL's reply comes straight back to us, and that request's reply
        # connects the stream; its token names the CallUUID, which the media route finds in
        # the store (no per-process CallUUID → call id map between the two requests)
        answer = ET.fromstring(stack.hooks("answer", carrier.id)[0].response_body)
        assert [child.tag for child in answer] == ["Redirect"]
        query = parse_qs(urlsplit(answer[0].text or "").query)
        assert query["flow"] == ["answered"] and "callId" not in query
        streamed = stack.hooks("redirect", carrier.id)[0].response_body
        assert_stream_xml(streamed, stack.port)
        assert f"token={carrier.id}." in streamed
        assert carrier.extra["said_via_stream"] == [LINE]
        assert_no_native_speech(stack, carrier.id)
        await stack.call("voicecall.end", callId=record.call_id)
        await stack.emulator.wait_ended(carrier.id)


async def refused(url: str, call_uuid: str) -> tuple[int, str]:
    """Open a media stream as Plivo would and send its start frame; the close we get."""
    start = {
        "event": "start",
        "sequenceNumber": 1,
        "start": {
            "callId": call_uuid,
            "streamId": str(uuid.uuid4()),
            "accountId": AUTH_ID,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
        },
        "extra_headers": "{}",
    }
    async with connect(url, open_timeout=5) as ws:
        await ws.send(json.dumps(start))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_a_stream_without_its_calls_token_is_refused(tmp_path: Path) -> None:
    async with streaming_stack(tmp_path, callee()) as (stack, fake):
        call_id = await start_conversation(stack)
        session = await live_session(stack, call_id)
        record = await stack.record(call_id)
        carrier = stack.carrier_call(record)
        stream_url = stream_element(stack.hooks("answer", carrier.id)[0].response_body).text or ""
        bare = stream_url.split("?")[0]
        token = parse_qs(urlsplit(stream_url).query)["token"][0]
        stt_sessions = len(fake.sessions)
        assert await refused(bare, carrier.id) == (1008, "missing stream token")
        forged = f"{bare}?token={token[:-6]}AAAAAA"
        code, reason = await refused(forged, carrier.id)
        assert code == 1008 and reason in ("invalid stream token", "malformed stream token")
        # the call's own token, claimed by a stream of another call
        assert await refused(stream_url, str(uuid.uuid4())) == (
            1008,
            "stream token is for another call",
        )
        assert len(fake.sessions) == stt_sessions  # no STT was opened for any of them
        assert stack.runtime.media.live == 1 and stack.runtime.media.get(call_id) is session
        assert not (await stack.record(call_id)).terminal
        await stack.call("voicecall.end", callId=call_id)
        await stack.wait_ended(call_id)
