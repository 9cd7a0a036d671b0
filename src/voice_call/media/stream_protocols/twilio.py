"""Twilio Media Streams (bidirectional `<Connect><Stream>`), docs/carriers.md §1.5.

In: `connected`, `start` (streamSid, start.callSid, start.customParameters — our token rides
there, since Twilio allows no query string on a Stream URL), `media` (base64 µ-law, 20 ms),
`dtmf`, `mark` (our mark came back: its audio played, or a `clear` dropped it), `stop`.
Out: `media`, `mark`, `clear`, each naming the streamSid.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from voice_call.media.stream_protocols.base import (
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


class TwilioStream(StreamProtocol):
    name = "twilio"
    token_in_query = False

    def handlers(self) -> dict[str, Handler]:
        return {
            "connected": lambda m: Connected(),
            "start": self._start,
            "media": media_frame,
            "dtmf": lambda m: Dtmf(dtmf_digit(obj(m, "dtmf").get("digit"))),
            "mark": lambda m: MarkAck(text(obj(m, "mark"), "name", "mark.")),
            "stop": lambda m: Stop(),
        }

    def _start(self, message: Mapping[str, Any]) -> Inbound:
        start = obj(message, "start")
        sid = safe_id(message, "streamSid") if "streamSid" in message else None
        sid = sid or safe_id(start, "streamSid", "start.")
        params = string_map(start.get("customParameters"))
        fmt = start.get("mediaFormat")
        encoding, rate = (
            media_format(fmt, "sampleRate") if isinstance(fmt, dict) else ("pcmu", 8000)
        )
        return Start(
            call_id=safe_id(start, "callSid", "start."),
            stream_id=sid,
            custom_params=params,
            token=params.get("token"),
            encoding=encoding,
            sample_rate=rate,
        )

    def media(self, payload_b64: str) -> str:
        sid = self._id_json()
        return f'{{"event":"media","streamSid":{sid},"media":{{"payload":"{payload_b64}"}}}}'

    def mark(self, name: str) -> str:
        mark = json.dumps({"name": name})
        return f'{{"event":"mark","streamSid":{self._id_json()},"mark":{mark}}}'

    def clear(self) -> str:
        return f'{{"event":"clear","streamSid":{self._id_json()}}}'
