"""Telnyx media streaming, bidirectional RTP mode with PCMU 8 kHz (docs/carriers.md §2.4).

In (snake_case, counters as strings): `connected`, `start` (stream_id, start.call_control_id,
start.custom_parameters, start.media_format), `media` (track inbound/outbound), `dtmf`, `mark`,
`error` (payload code/title/detail), `stop`. Out: `media` `{"media":{"payload"}}`, `mark`,
`clear` — Telnyx needs no stream id on them. Our token rides in the stream URL's query.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from voice_call.media.stream_protocols.base import (
    CarrierError,
    Connected,
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


class TelnyxStream(StreamProtocol):
    name = "telnyx"
    token_in_query = True

    def handlers(self) -> dict[str, Handler]:
        return {
            "connected": lambda m: Connected(),
            "start": self._start,
            "media": media_frame,
            "dtmf": lambda m: Dtmf(dtmf_digit(obj(m, "dtmf").get("digit"))),
            "mark": lambda m: MarkAck(text(obj(m, "mark"), "name", "mark.")),
            "error": self._error,
            "stop": lambda m: Stop(),
        }

    def _start(self, message: Mapping[str, Any]) -> Inbound:
        start = obj(message, "start")
        fmt = start.get("media_format")
        encoding, rate = (
            media_format(fmt, "sample_rate") if isinstance(fmt, dict) else ("pcmu", 8000)
        )
        return Start(
            call_id=safe_id(start, "call_control_id", "start."),
            stream_id=safe_id(message, "stream_id") if "stream_id" in message else None,
            custom_params=string_map(start.get("custom_parameters")),
            encoding=encoding,
            sample_rate=rate,
        )

    def _error(self, message: Mapping[str, Any]) -> Inbound:
        body = message.get("payload")
        body = body if isinstance(body, dict) else {}
        return CarrierError(
            str(body.get("code", ""))[:64],
            str(body.get("title", ""))[:200],
            str(body.get("detail", ""))[:500],
        )

    def media(self, payload_b64: str) -> str:
        return f'{{"event":"media","media":{{"payload":"{payload_b64}"}}}}'

    def mark(self, name: str) -> str:
        return f'{{"event":"mark","mark":{json.dumps({"name": name})}}}'

    def clear(self) -> str:
        return '{"event":"clear"}'
