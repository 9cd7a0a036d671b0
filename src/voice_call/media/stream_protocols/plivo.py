"""Plivo audio streams, bidirectional with `audio/x-mulaw;rate=8000` (docs/carriers.md §3.5).

In: `start` (start.callId, start.streamId, start.mediaFormat, extra_headers), `media`, `dtmf`,
`playedStream` (a checkpoint's audio has played), `clearedAudio`; Plivo sends no `stop` (the
socket just closes) but one is understood. Out: `playAudio` (µ-law 8 kHz), `checkpoint`,
`clearAudio`. A `clearAudio` drops pending checkpoints without acknowledging them. Our token
rides in the stream URL's query.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from voice_call.media.stream_protocols.base import (
    Cleared,
    Dtmf,
    Handler,
    Inbound,
    MarkAck,
    Start,
    Stop,
    StreamProtocol,
    media_format,
    media_frame,
    obj,
    safe_id,
    string_map,
    text,
)
from voice_call.media.stream_protocols.base import digit as dtmf_digit


def extra_headers(value: Any) -> dict[str, str]:
    """`extra_headers` as Plivo sends it, a `"{k: v, k2: v2}"` string (or an object)."""
    if isinstance(value, dict):
        return string_map(value)
    if not isinstance(value, str):
        return {}
    pairs = (item.split(":", 1) for item in value.strip().strip("{}").split(",") if ":" in item)
    return {k.strip(): v.strip() for k, v in pairs if k.strip()}


class PlivoStream(StreamProtocol):
    name = "plivo"
    token_in_query = True
    sends_stop = False

    def handlers(self) -> dict[str, Handler]:
        return {
            "start": self._start,
            "media": media_frame,
            "dtmf": self._dtmf,
            "playedStream": lambda m: MarkAck(text(m, "name")),
            "clearedAudio": lambda m: Cleared(),
            "stop": lambda m: Stop(),
        }

    def _start(self, message: Mapping[str, Any]) -> Inbound:
        start = obj(message, "start")
        fmt = start.get("mediaFormat")
        encoding, rate = (
            media_format(fmt, "sampleRate") if isinstance(fmt, dict) else ("pcmu", 8000)
        )
        return Start(
            call_id=safe_id(start, "callId", "start."),
            stream_id=safe_id(start, "streamId", "start."),
            custom_params=extra_headers(message.get("extra_headers")),
            encoding=encoding,
            sample_rate=rate,
        )

    def _dtmf(self, message: Mapping[str, Any]) -> Inbound:
        body = message.get("dtmf")
        return Dtmf(
            dtmf_digit(body.get("digit") if isinstance(body, dict) else message.get("digit"))
        )

    def media(self, payload_b64: str) -> str:
        return (
            '{"event":"playAudio","media":{"contentType":"audio/x-mulaw","sampleRate":8000,'
            f'"payload":"{payload_b64}"}}}}'
        )

    def mark(self, name: str) -> str:
        return json.dumps({"event": "checkpoint", "streamId": self.stream_id, "name": name})

    def clear(self) -> str:
        return f'{{"event":"clearAudio","streamId":{self._id_json()}}}'
