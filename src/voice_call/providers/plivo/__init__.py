"""Plivo Voice API: calls over REST, Plivo XML served from our webhook, V3-signed callbacks.

The carrier's map:
- `provider.py`  `PlivoProvider` and `build()`: what the registry loads.
- `rest.py`      the Voice API subset out (make call, transfer, hang up), one httpx client.
- `webhooks.py`  V3 (and V2 fallback) signature verification and callbacks → normalised events.
- `markup.py`    Plivo XML documents (`<Speak>`, `<GetInput>`, `<Stream>`), always escaped.
- `replies.py`   the XML each callback is answered with, rebuilt from the callback alone.
- `urls.py`      callback URLs carrying what any instance needs to serve them.
- `voice.py`     which `<Speak voice language>` a call gets.
- elsewhere:     media frames parsed in `media/stream_protocols/plivo.py`, signature
                 algorithm `security/signatures/plivo.py`, emulator `sim/plivo/`, notes
                 `docs/carriers.md` §3; shared with the other carriers: the Polly voice table
                 `providers/voices.py`, number routes `voice_call/numbers.py`.
"""

from voice_call.providers.plivo.provider import PlivoProvider, build

__all__ = ["PlivoProvider", "build"]
