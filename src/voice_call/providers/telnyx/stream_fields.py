"""The `stream_*` fields that put a Telnyx call's audio on our media WebSocket (Dial, answer).

Bidirectional RTP in PCMU both ways (docs/carriers.md §2.4): Telnyx streams the caller
(`inbound_track`) as µ-law 8 kHz, transcoding when the call's codec differs (`stream_codec`), and
plays the µ-law we send back. The media route accepts nothing else; the frames on that socket
are parsed in media/stream_protocols/telnyx.py.

The token rides in the URL's query. Telnyx opens the socket only once the call is answered, so
for a Dial it must outlive the ringing: when `timeout_secs` (plus the time Telnyx takes to
connect) can exceed `streaming.tokenTtlSeconds`, that Dial's token lives as long as needed.
"""

from __future__ import annotations

from voice_call.models import CallRecord
from voice_call.providers.streamed_speech import StreamedSpeech

CONNECT_SLACK_S = 30  # answer → socket open, with room for a slow handshake


def stream_fields(
    streamed: StreamedSpeech,
    webhook_url: str,
    call_id: str,
    *,
    ring_s: float = 0,
    record: CallRecord | None = None,
) -> dict[str, object]:
    """The fields to add to a Dial (`ring_s` = its timeout_secs) or an answer; STT and TTS
    start warming now."""
    # the token rides in the URL; a Dial's must outlive the ringing
    needed_s = ring_s + CONNECT_SLACK_S if ring_s else 0
    url, _ = streamed.setup(webhook_url, call_id, record, min_ttl_s=needed_s)
    return {
        "stream_url": url,
        "stream_track": "inbound_track",
        "stream_codec": "PCMU",
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": "PCMU",
    }
