"""The Deepgram live transcription client against the fake `/v1/listen` socket."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.speech.test_stt_realtime import SILENT, Heard, loud_frame
from tests.support import StolenTime, wait_until
from voice_call.config import ConfigError, parse_config
from voice_call.sim.deepgram import FakeDeepgram, ListenScript
from voice_call.speech.stack import SpeechUnavailable, stt_settings
from voice_call.speech.stt.base import SttError
from voice_call.speech.stt.deepgram import DeepgramStt, DeepgramSttSettings, listen_url

KEY = "dg-test"


def settings(fake: FakeDeepgram, **changes: object) -> DeepgramSttSettings:
    base = DeepgramSttSettings(api_key=KEY, url=fake.listen_url, endpointing_ms=200)
    return replace(base, **changes)  # type: ignore[arg-type]


async def talk(stt: DeepgramStt, speech_frames: int = 15, quiet_frames: int = 20) -> None:
    for index in range(speech_frames):
        stt.send_audio(loud_frame(index))
        await asyncio.sleep(0)
    for _ in range(quiet_frames):
        stt.send_audio(SILENT)
        await asyncio.sleep(0)


def test_the_stream_asks_for_the_caller_s_ulaw_as_it_is() -> None:
    url = listen_url(DeepgramSttSettings(api_key=KEY, language="de"))
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("wss", "api.deepgram.com", "/v1/listen")
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {
        "model": "nova-3",
        "encoding": "mulaw",
        "sample_rate": "8000",
        "channels": "1",
        "interim_results": "true",
        "endpointing": "300",
        "utterance_end_ms": "1000",
        "vad_events": "true",
        "smart_format": "true",
        "language": "de",
    }
    # a query the URL already has (a proxy's, a test's) is kept, and wins
    kept = listen_url(DeepgramSttSettings(api_key=KEY, url="ws://h/v1/listen?tag=x&model=m"))
    assert "tag=x" in kept and "model=m" in kept and "model=nova-3" not in kept


async def test_speech_start_partials_and_final_from_forwarded_ulaw() -> None:
    script = ListenScript(["yes please"], first_result_ms=0, per_word_ms=0, final_ms=0)
    async with FakeDeepgram(KEY, listen=script, time_scale=0.05) as fake:
        heard = Heard()
        stt = DeepgramStt(settings(fake), heard)
        await stt.connect()
        await stt.connect()  # idempotent
        assert stt.connected and len(fake.streams) == 1
        await talk(stt)
        assert await heard.wait("final") == "yes please"
        await stt.close()
    kinds = [k for k, _ in heard.events]
    assert kinds[0] == "speech" and kinds[-1] == "final" and kinds.count("final") == 1
    partials = [t for k, t in heard.events if k == "partial"]
    assert partials[0] == "yes" and partials[-1] == "yes please"
    stream = fake.streams[0]
    assert stream.query["encoding"] == "mulaw" and stream.query["endpointing"] == "200"
    assert stream.received[0] == {"binary": len(loud_frame(0))}  # raw frames, no envelope
    assert stream.audio_bytes == 35 * len(SILENT)
    # close says CloseStream; the fake answers with Metadata and a normal close
    assert stream.received[-1] == {"type": "CloseStream"}
    assert stream.sent[-1]["type"] == "Metadata" and stream.close_code == 1000


async def test_is_final_segments_add_up_until_the_utterance_ends() -> None:
    """Deepgram finalises a long utterance in pieces; the caller said one thing."""
    heard = Heard()
    stt = DeepgramStt(DeepgramSttSettings(api_key=KEY), heard)

    def results(text: str, *, final: bool, speech_final: bool = False) -> dict[str, object]:
        return {
            "type": "Results",
            "is_final": final,
            "speech_final": speech_final,
            "start": 0.0,
            "duration": 1.0,
            "channel": {"alternatives": [{"transcript": text}]},
        }

    stt._dispatch(results("I would like", final=False))
    stt._dispatch(results("I would like to book", final=True))
    stt._dispatch(results("a table", final=False))
    stt._dispatch(results("a table for two", final=True))
    assert not [k for k, _ in heard.events if k == "final"]
    stt._dispatch({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 2.5})
    stt._dispatch({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 2.5})
    assert [t for k, t in heard.events if k == "partial"] == [
        "I would like",
        "I would like to book",
        "I would like to book a table",
        "I would like to book a table for two",
    ]
    assert [t for k, t in heard.events if k == "final"] == ["I would like to book a table for two"]
    stt._dispatch(results("", final=True, speech_final=True))  # an endpoint on noise
    stt._dispatch({"type": "Results", "channel": "garbled", "is_final": True})
    assert len([k for k, _ in heard.events if k == "final"]) == 1


async def test_a_wrong_key_is_refused_at_the_handshake_with_deepgram_s_reason() -> None:
    async with FakeDeepgram(KEY) as fake:
        stt = DeepgramStt(settings(fake, api_key="dg-wrong"))
        with pytest.raises(SttError, match=r"HTTP 401 Invalid credentials\."):
            await stt.connect()
        assert not stt.connected and fake.streams[0].refused == 401
        bad = DeepgramStt(settings(fake, url=fake.listen_url + "?encoding=wav"))
        with pytest.raises(SttError, match="HTTP 400 Invalid value for `encoding`"):
            await bad.connect()
    unreachable = DeepgramStt(
        DeepgramSttSettings(api_key=KEY, url="ws://127.0.0.1:9/v1/listen", connect_timeout_s=2)
    )
    with pytest.raises(SttError, match="cannot reach Deepgram"):
        await unreachable.connect()


async def test_a_quiet_stream_sends_keepalives_and_is_not_closed_as_idle() -> None:
    script = ListenScript(idle_timeout_ms=400)
    async with FakeDeepgram(KEY, listen=script) as fake:
        stt = DeepgramStt(settings(fake, keepalive_s=0.1))
        await stt.connect()
        await wait_until(lambda: len(fake.streams[0].received) >= 6)
        assert fake.streams[0].received[:6] == [{"type": "KeepAlive"}] * 6
        assert stt.connected and not fake.streams[0].closed and stt.reconnects == 0
        await stt.close()


async def test_a_socket_left_idle_is_closed_as_deepgram_does() -> None:
    from websockets.asyncio.client import connect

    script = ListenScript(idle_timeout_ms=200)
    async with FakeDeepgram(KEY, listen=script) as fake:
        url = listen_url(settings(fake))
        async with connect(url, additional_headers={"Authorization": f"Token {KEY}"}) as ws:
            await ws.wait_closed()
        assert ws.close_code == 1011 and "net0001" in (ws.close_reason or "")


async def test_an_unexpected_close_reconnects_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    script = ListenScript(["after the drop"], first_result_ms=0, per_word_ms=0, final_ms=0)
    async with FakeDeepgram(KEY, listen=script, time_scale=0.05) as fake:
        heard = Heard()
        stt = DeepgramStt(settings(fake), heard, sleep=no_wait)
        await stt.connect()
        with caplog.at_level(logging.WARNING, "voice_call.stt"):
            assert await fake.drop_streams(1011, "INTERNAL_SERVER_ERROR") == 1
            await wait_until(lambda: stt.reconnects == 1)
        assert "Deepgram closed the stream: 1011 INTERNAL_SERVER_ERROR" in caplog.text
        await talk(stt)
        assert await heard.wait("final") == "after the drop"
        await stt.close()
    assert waits == [1.0] and len(fake.streams) == 2


async def test_reconnects_run_out_and_report_a_fatal_error() -> None:
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    heard = Heard()
    async with FakeDeepgram(KEY) as fake:
        stt = DeepgramStt(settings(fake, max_reconnects=3), heard, sleep=no_wait)
        await stt.connect()
        fake.listen.refuse(503, "Service unavailable.")
        await fake.drop_streams()
        assert "reconnecting failed" in await heard.wait("fatal")
    assert waits == [1.0, 2.0, 4.0] and not stt.connected
    assert [s.refused for s in fake.streams] == [None, 503, 503, 503]
    await stt.close()


async def test_the_end_of_speech_is_placed_on_our_clock_from_the_last_word() -> None:
    script = ListenScript(["yes please"], first_result_ms=0, per_word_ms=0, final_ms=0)
    async with FakeDeepgram(KEY, listen=script) as fake:
        heard = Heard()
        stt = DeepgramStt(settings(fake), heard)
        await stt.connect()
        assert stt.speech_ended_at is None
        loop = asyncio.get_running_loop()
        with StolenTime() as stolen:
            for index in range(25):  # half a second of speech, then quiet, in real time
                stt.send_audio(loud_frame(index))
                await asyncio.sleep(0.02)
            last_word = loop.time()
            for _ in range(40):
                stt.send_audio(SILENT)
                await asyncio.sleep(0.02)
                if stt.speech_ended_at is not None:
                    break
        await heard.wait("final")
        await stt.close()
    # the final came after 200 ms of endpointing; the last word ended before that
    assert stt.speech_ended_at is not None
    off_s = abs(stt.speech_ended_at - last_word)
    assert off_s < 0.1 + stolen.ms / 1000, (off_s, stolen.ms)


def test_the_deepgram_block_and_its_key_reach_the_stream() -> None:
    block = {
        "url": "wss://dg.example.test/v1/listen",
        "model": "nova-2-phonecall",
        "language": "en-GB",
        "endpointingMs": 500,
        "utteranceEndMs": 1500,
        "smartFormat": False,
    }
    raw = {"streaming": {"enabled": True, "provider": "deepgram", "providers": {"deepgram": block}}}
    settings = stt_settings(parse_config(raw, env={"DEEPGRAM_API_KEY": "dg-env"}))
    assert settings == DeepgramSttSettings(
        api_key="dg-env",
        url=block["url"],
        model="nova-2-phonecall",
        language="en-GB",
        endpointing_ms=500,
        utterance_end_ms=1500,
        smart_format=False,
    )
    block["apiKey"] = "dg-block"  # the block's own key wins over the environment's
    assert stt_settings(parse_config(raw, env={"DEEPGRAM_API_KEY": "dg-env"})).api_key == "dg-block"
    quiet = {**raw, "streaming": {**raw["streaming"], "providers": {"deepgram": {}}}}
    with pytest.raises(SpeechUnavailable, match=r"deepgramApiKey / DEEPGRAM_API_KEY"):
        stt_settings(parse_config(quiet, env={}))
    no_interims = {"interimResults": False}
    plain = {"streaming": {"provider": "deepgram", "providers": {"deepgram": no_interims}}}
    without = stt_settings(parse_config({**plain, "deepgramApiKey": "dg"}, env={}))
    assert (without.interim_results, without.utterance_end_ms) == (False, None)
    assert "utterance_end_ms" not in listen_url(without)


@pytest.mark.parametrize(
    ("block", "error"),
    [
        ({"url": "https://api.deepgram.com/v1/listen"}, "is not a WebSocket URL"),
        ({"utteranceEndMs": 500}, r"utteranceEndMs: must be at least 1000"),
        ({"endpointingMs": 0}, r"endpointingMs: must be at least 10"),
        (
            {"interimResults": False, "utteranceEndMs": 1000},
            "finds the end of an utterance from interim results — remove utteranceEndMs",
        ),
        ({"keywords": ["Jörg"]}, r"deepgram\.keywords: unknown key"),
    ],
)
def test_a_bad_deepgram_setting_is_refused_at_load(block: dict[str, object], error: str) -> None:
    raw = {"streaming": {"provider": "deepgram", "providers": {"deepgram": block}}}
    with pytest.raises(ConfigError, match=error):
        parse_config(raw, env={})


async def test_connect_while_reconnecting_does_not_open_a_second_stream() -> None:
    """The stream starts (connect) just as the pre-warmed socket is being re-opened."""
    release = asyncio.Event()

    async def held(seconds: float) -> None:
        await release.wait()

    async with FakeDeepgram(KEY) as fake:
        stt = DeepgramStt(settings(fake), Heard(), sleep=held)
        await stt.connect()
        await fake.drop_streams()
        await wait_until(lambda: not stt.connected)
        await stt.connect()  # returns: the session is re-opening on its own
        assert len(fake.streams) == 1
        release.set()
        await wait_until(lambda: stt.connected and stt.reconnects == 1)
        assert len(fake.streams) == 2
        await stt.close()
