"""Telnyx Call Control v2: calls over REST commands, Ed25519-signed JSON webhooks.

The carrier's map:
- `provider.py`       `TelnyxProvider` and `build()`: what the registry loads.
- `rest.py`           Call Control commands out (Dial, answer, speak, hang up), Bearer key.
- `webhooks.py`       Ed25519 verification, `client_state`, and envelopes → normalised events.
- `voice.py`          what `speak` and `transcription_start` say, in which voice; DTMF spelling.
- `stream_fields.py`  the `stream_*` fields that put a call's audio on our media WebSocket.
- elsewhere:          media frames parsed in `media/stream_protocols/telnyx.py`, signature
                      algorithm `security/signatures/telnyx.py`, emulator `sim/telnyx/`,
                      notes `docs/carriers.md` §2; shared with the other carriers: the Polly
                      voice table `providers/voices.py`, number routes `voice_call/numbers.py`.
Telnyx has no markup: every action is a REST command, so there is no `markup.py`.
"""

from voice_call.providers.telnyx.provider import TelnyxProvider, build

__all__ = ["TelnyxProvider", "build"]
