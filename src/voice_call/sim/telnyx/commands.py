"""The Call Control commands (`POST /v2/calls/{id}/actions/<name>`) and the webhooks they cause.

Each command validates its body like Telnyx (422 with a JSON pointer), applies `client_state`,
answers at once (the REST layer replies `{"data": {"result": "ok"}}`), and does its work in the
background: speak → call.speak.started/ended; gather_using_speak → the prompt, then
call.dtmf.received per key and call.gather.ended; playback_start → call.playback.started/ended;
transcription_start → call.transcription; streaming_start/stop → streaming.started/stopped.
"""

from __future__ import annotations

import base64
import io
import re
import wave
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voice_call.sim.telnyx import errors, params
from voice_call.sim.telnyx.call import Switch, TelnyxCall

Body = dict[str, Any]

PLAYBACK_S = 1.0  # length of audio we cannot fetch or decode (a URL, MP3) [M: emulator choice]


def strip_ssml(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)).strip()


def _speech_text(body: Body) -> str:
    """`payload` + `voice` (both required) as the words the callee will hear."""
    payload = params.required_text(body, "payload", max_len=3000)
    params.required_text(body, "voice")
    kind = params.choice(body, "payload_type", ("text", "ssml"), "text")
    return strip_ssml(payload) if kind == "ssml" else payload


# -- answering and ending ------------------------------------------------------------------------


def answer(leg: TelnyxCall, body: Body) -> None:
    if leg.outgoing or leg.answered:
        raise errors.wrong_state("Only an incoming call that is still parked can be answered.")
    webhook_url = params.url(body, "webhook_url", ("http", "https"))
    stream = params.stream(body)
    transcription = params.transcription_config(body)
    leg.apply_common(body)
    if webhook_url is not None:
        leg.set_webhook_url(webhook_url)
    leg.stream_on_answer = stream
    leg.transcription_on_answer = transcription
    leg.answer_now()


def reject(leg: TelnyxCall, body: Body) -> None:
    if leg.outgoing or leg.answered:
        raise errors.wrong_state("Only an incoming call that is still parked can be rejected.")
    cause = params.choice(body, "cause", ("CALL_REJECTED", "USER_BUSY"), "CALL_REJECTED")
    leg.apply_common(body)
    leg.end("user_busy" if cause == "USER_BUSY" else "call_rejected", "callee")


def hangup(leg: TelnyxCall, body: Body) -> None:
    leg.apply_common(body)
    if leg.outgoing and not leg.answered:
        leg.end("originator_cancel", "caller")  # we cancel our own ringing call [M]
    else:
        # hangup_source names the party that hung up: the app is the caller on a call it
        # dialled and the callee on one it received [M].
        leg.end("normal_clearing", "caller" if leg.outgoing else "callee")


# -- speaking and playing ------------------------------------------------------------------------


def speak(leg: TelnyxCall, body: Body) -> None:
    leg.require_answered("speak")
    text = _speech_text(body)
    leg.apply_common(body)
    leg.spawn(_speak(leg, text))


async def _speak(leg: TelnyxCall, text: str) -> None:
    async with leg.output:
        await leg.say(text)
    leg.turns.bot_finished(text, outbound_text=text)


def playback_start(leg: TelnyxCall, body: Body) -> None:
    leg.require_answered("playback_start")
    audio_url = params.url(body, "audio_url", ("http", "https"))
    media_name = params.text(body, "media_name")
    content = params.text(body, "playback_content")
    if audio_url is None and media_name is None and content is None:
        raise errors.missing("audio_url")
    params.choice(body, "audio_type", ("mp3", "wav"), "mp3")
    overlay = params.flag(body, "overlay")
    leg.apply_common(body)
    seconds = (_wav_seconds(content) if content else None) or PLAYBACK_S
    info = {"media_url": audio_url, "media_name": media_name, "overlay": overlay}
    label = audio_url or media_name or "playback_content"
    leg.spawn(_playback(leg, info, seconds, f"[play {label}]"))


async def _playback(leg: TelnyxCall, info: Body, seconds: float, heard: str) -> None:
    async with leg.output:
        leg.turns.bot_started()
        leg.turns.speaking += 1
        token = leg.owe("call.playback.ended", {**info, "status": "call_hangup"})
        leg.post("call.playback.started", info)
        try:
            await leg.sleep(seconds)
        finally:
            leg.turns.speaking -= 1
        leg.settle(token)
        leg.post("call.playback.ended", {**info, "status": "completed"})
    leg.turns.bot_finished(heard)


def _wav_seconds(content_b64: str) -> float | None:
    """Duration of base64 WAV `playback_content`; None for MP3 or anything unreadable."""
    try:
        with wave.open(io.BytesIO(base64.b64decode(content_b64))) as reader:
            frames: int = reader.getnframes()
            rate: int = reader.getframerate()
    except (wave.Error, EOFError, ValueError):
        return None
    return frames / rate if rate else None


# -- keys ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatherCommand:
    minimum: int
    maximum: int
    timeout_s: float
    terminator: str
    valid: str
    tries: int
    invalid_prompt: str | None


def gather_using_speak(leg: TelnyxCall, body: Body) -> None:
    leg.require_answered("gather_using_speak")
    prompt = _speech_text(body)
    invalid = params.text(body, "invalid_payload", max_len=3000)
    # Defaults of actions/gather [S]; gather_using_speak is assumed to share them, with
    # maximum_tries 3 [M]. Like Telnyx, it collects DTMF only: speech comes by transcription.
    gather = GatherCommand(
        minimum=params.integer(body, "minimum_digits", 1, 1, 128),
        maximum=params.integer(body, "maximum_digits", 128, 1, 128),
        timeout_s=params.integer(body, "timeout_millis", 60000, 1, 600000) / 1000,
        terminator=params.text(body, "terminating_digit") or "#",
        valid=params.text(body, "valid_digits") or "0123456789#*",
        tries=params.integer(body, "maximum_tries", 3, 1, 10),
        invalid_prompt=strip_ssml(invalid) if invalid else None,
    )
    leg.apply_common(body)
    leg.spawn(_gather(leg, prompt, gather))


async def _gather(leg: TelnyxCall, prompt: str, gather: GatherCommand) -> None:
    """Prompt, wait for keys; replay on silence or invalid keys until `maximum_tries`."""
    async with leg.output:
        leg.turns.gathering = True
        token = leg.owe(
            "call.gather.ended", {**leg.numbers(), "digits": "", "status": "call_hangup"}
        )
        digits, status = "", "timeout"
        try:
            for _ in range(gather.tries):
                await leg.say(prompt)
                if leg.callee.hear(prompt):
                    leg.spawn(leg.turns.hang_up_soon())
                keys = leg.next_dtmf()
                if keys is None:
                    await leg.sleep(gather.timeout_s)
                    digits, status = "", "timeout"
                    continue
                digits = await leg.press(keys, gather.terminator, gather.maximum)
                if len(digits) >= gather.minimum and all(d in gather.valid for d in digits):
                    status = "valid"
                    break
                status = "invalid"
                prompt = gather.invalid_prompt or prompt
        finally:
            leg.turns.gathering = False
        leg.settle(token)
        leg.post("call.gather.ended", {**leg.numbers(), "digits": digits, "status": status})
    leg.turns.answered_with_keys()


def send_dtmf(leg: TelnyxCall, body: Body) -> None:
    leg.require_answered("send_dtmf")
    digits = params.dtmf_digits(body)
    params.integer(body, "duration_millis", 250, 100, 500)
    leg.apply_common(body)
    leg.callee.digits.append(digits)  # what the app sent the callee, as the mock provider logs


# -- listening and streaming ---------------------------------------------------------------------


def transcription_start(leg: TelnyxCall, body: Body) -> None:
    leg.require_answered("transcription_start")
    params.choice(body, "transcription_tracks", ("inbound", "outbound", "both"), "inbound")
    leg.apply_common(body)
    leg.turns.start_transcription(body)


def transcription_stop(leg: TelnyxCall, body: Body) -> None:
    leg.apply_common(body)
    leg.turns.stop_transcription()


def streaming_start(leg: TelnyxCall, body: Body) -> None:
    leg.require_answered("streaming_start")
    stream = params.stream(body)
    if stream is None:
        raise errors.missing("stream_url")
    leg.apply_common(body)
    leg.spawn(leg.open_stream(stream))


def streaming_stop(leg: TelnyxCall, body: Body) -> None:
    leg.apply_common(body)
    leg.spawn(leg.close_stream())


# -- recording -----------------------------------------------------------------------------------


def record_start(leg: TelnyxCall, body: Body) -> None:
    """Record until hang-up (or record_stop); `call.recording.saved` then names the file."""
    leg.require_answered("record_start")
    if "format" not in body:
        raise errors.missing("format")
    if "channels" not in body:
        raise errors.missing("channels")
    params.choice(body, "format", ("wav", "mp3"), "wav")
    channels = params.choice(body, "channels", ("single", "dual"), "single")
    if body["format"] != "wav":
        raise errors.invalid("format", "The emulator records WAV only [M: emulator choice].")
    leg.apply_common(body)
    leg.ctx.recordings.start(leg.id, 2 if channels == "dual" else 1)


def record_stop(leg: TelnyxCall, body: Body) -> None:
    leg.apply_common(body)
    leg.recordings_saved()


def transfer(leg: TelnyxCall, body: Body) -> None:
    _switchboard(leg).transfer(leg, body)


def bridge(leg: TelnyxCall, body: Body) -> None:
    _switchboard(leg).bridge(leg, body)


def _switchboard(leg: TelnyxCall) -> Switch:
    if leg.ctx.switchboard is None:
        raise errors.not_found("The emulator does not implement transfers here.")
    return leg.ctx.switchboard


ACTIONS: dict[str, Callable[[TelnyxCall, Body], None]] = {
    "transfer": transfer,
    "bridge": bridge,
    "record_start": record_start,
    "record_stop": record_stop,
    "answer": answer,
    "reject": reject,
    "hangup": hangup,
    "speak": speak,
    "gather_using_speak": gather_using_speak,
    "playback_start": playback_start,
    "send_dtmf": send_dtmf,
    "transcription_start": transcription_start,
    "transcription_stop": transcription_stop,
    "streaming_start": streaming_start,
    "streaming_stop": streaming_stop,
}
