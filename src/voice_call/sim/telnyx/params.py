"""Reading Call Control request bodies the way Telnyx validates them (422 with a JSON pointer)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import urlsplit

from voice_call.sim.telnyx import errors
from voice_call.sim.telnyx.stream import StreamParams

Body = dict[str, Any]

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_DTMF = re.compile(r"[0-9A-Da-d*#wW]+")
STREAM_TRACKS = ("inbound_track", "outbound_track", "both_tracks")
BIDIRECTIONAL_MODES = ("mp3", "rtp")
# Telnyx accepts more codecs (PCMA, G722, OPUS, AMR-WB, L16); the emulator only speaks PCMU.
EMULATED_CODECS = ("PCMU", "default")


def text(
    body: Body, name: str, *, required: bool = False, max_len: int | None = None
) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise errors.missing(name)
        return None
    if not isinstance(value, str):
        raise errors.invalid(name, f"'{name}' must be a string.")
    if max_len is not None and len(value) > max_len:
        raise errors.invalid(name, f"'{name}' must be at most {max_len} characters.")
    return value


def required_text(body: Body, name: str, max_len: int | None = None) -> str:
    value = text(body, name, required=True, max_len=max_len)
    assert value is not None
    return value


def integer(body: Body, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise errors.invalid(name, f"'{name}' must be an integer from {low} to {high}.")
    return value


def choice(body: Body, name: str, options: tuple[str, ...], default: str) -> str:
    value = body.get(name, default)
    if value not in options:
        raise errors.invalid(name, f"'{name}' must be one of {', '.join(options)}.")
    return str(value)


def flag(body: Body, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise errors.invalid(name, f"'{name}' must be a boolean.")
    return value


def client_state(body: Body) -> str | None:
    """`client_state` must be base64 (Telnyx rejects anything else)."""
    value = text(body, "client_state")
    if value is not None:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise errors.invalid("client_state", "'client_state' must be base64.") from None
    return value


def number(body: Body, name: str) -> str:
    value = body.get(name)
    if value is None or value == "":
        raise errors.missing(name)
    if isinstance(value, list):
        # Simultaneous ring (a list of numbers) is real Telnyx, but not emulated.
        raise errors.invalid(name, f"The emulator dials a single '{name}', not a list.")
    if not isinstance(value, str) or not (_E164.fullmatch(value) or value.startswith("sip:")):
        raise errors.bad_number(name)
    return value


def url(body: Body, name: str, schemes: tuple[str, ...]) -> str | None:
    value = text(body, name, max_len=2000)
    if value is not None:
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.netloc:
            raise errors.TelnyxErrorReply(
                422,
                "10003",
                "Invalid URL",
                f"'{name}' must be a {'/'.join(schemes)} URL.",
                f"/{name}",
            )
    return value


def dtmf_digits(body: Body, name: str = "digits") -> str:
    value = required_text(body, name)
    if not _DTMF.fullmatch(value):
        raise errors.invalid(name, f"'{name}' may hold only 0-9, A-D, *, # and w/W.")
    return value


def stream(body: Body) -> StreamParams | None:
    """The `stream_*` fields of Dial, answer and streaming_start, or None without `stream_url`."""
    stream_url = url(body, "stream_url", ("ws", "wss"))
    if stream_url is None:
        return None
    codec = choice(body, "stream_codec", EMULATED_CODECS, "default")
    bidirectional_codec = choice(body, "stream_bidirectional_codec", ("PCMU",), "PCMU")
    mode = body.get("stream_bidirectional_mode")
    if mode is not None:
        mode = choice(body, "stream_bidirectional_mode", BIDIRECTIONAL_MODES, "mp3")
    custom: dict[str, str] = {}
    raw_custom = body.get("custom_parameters") or []
    if not isinstance(raw_custom, list):
        raise errors.invalid("custom_parameters", "'custom_parameters' must be a list.")
    for item in raw_custom:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise errors.invalid("custom_parameters", "Each custom parameter needs a name.")
        custom[item["name"]] = str(item.get("value", ""))
    return StreamParams(
        url=stream_url,
        track=choice(body, "stream_track", STREAM_TRACKS, "inbound_track"),
        bidirectional_mode=mode,
        codec=bidirectional_codec if codec == "default" else codec,
        custom_parameters=custom,
        auth_token=text(body, "stream_auth_token"),
    )


def transcription_config(body: Body) -> Body | None:
    """Dial/answer `transcription: true` + `transcription_config`, or None when off."""
    if not flag(body, "transcription"):
        return None
    config = body.get("transcription_config") or {}
    if not isinstance(config, dict):
        raise errors.invalid("transcription_config", "'transcription_config' must be an object.")
    return config
