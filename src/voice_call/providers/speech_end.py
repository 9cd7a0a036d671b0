"""`silenceTimeoutMs` in each carrier's own end-of-speech setting, rounded the same way for all.

The caller's pause that ends their turn when the carrier transcribes (Twilio `<Gather
speechTimeout>`, Plivo `<GetInput speechEndTimeout>`, Telnyx's Deepgram `utterance_end_ms`):
the configured milliseconds rounded to the nearest whole second, then held to the range the
carrier accepts (docs/carriers.md).
"""

from __future__ import annotations


def speech_end_seconds(silence_ms: int, low: int, high: int) -> int:
    """`silence_ms` to the nearest second, within the carrier's `low`..`high` seconds."""
    return min(high, max(low, round(silence_ms / 1000)))
