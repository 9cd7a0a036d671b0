"""One small class per carrier media socket; `protocol_for(provider)` picks it.

The mock provider has no media socket of its own; it gets Twilio's, so a local client (or
`voicecall sim`) can stream against a mock-provider server.
"""

from __future__ import annotations

from voice_call.media.stream_protocols.base import (
    CarrierError,
    Cleared,
    Connected,
    Dtmf,
    Ignored,
    Inbound,
    Malformed,
    MarkAck,
    Media,
    Start,
    Stop,
    StreamProtocol,
)
from voice_call.media.stream_protocols.plivo import PlivoStream
from voice_call.media.stream_protocols.telnyx import TelnyxStream
from voice_call.media.stream_protocols.twilio import TwilioStream

PROTOCOLS: dict[str, type[StreamProtocol]] = {
    "twilio": TwilioStream,
    "telnyx": TelnyxStream,
    "plivo": PlivoStream,
    "mock": TwilioStream,
}


def protocol_for(provider: str) -> type[StreamProtocol]:
    try:
        return PROTOCOLS[provider]
    except KeyError:
        raise ValueError(f"no media stream protocol for provider {provider!r}") from None


__all__ = [
    "PROTOCOLS",
    "CarrierError",
    "Cleared",
    "Connected",
    "Dtmf",
    "Ignored",
    "Inbound",
    "Malformed",
    "MarkAck",
    "Media",
    "PlivoStream",
    "Start",
    "Stop",
    "StreamProtocol",
    "TelnyxStream",
    "TwilioStream",
    "protocol_for",
]
