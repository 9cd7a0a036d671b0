"""Twilio Programmable Voice: calls over REST, TwiML served from our webhook, signed callbacks.

The carrier's map:
- `provider.py`  `TwilioProvider` and `build()`: what the registry loads.
- `rest.py`      the Calls REST API out (create, update with TwiML, hang up, fetch).
- `webhooks.py`  `X-Twilio-Signature` check; where a status or Gather callback becomes events.
- `markup.py`    TwiML documents (`<Say>`, `<Gather>`, `<Connect><Stream>`), always escaped.
- `voice.py`     which voice and language `<Say>`/`<Gather>` use on a call.
- elsewhere:     media frames parsed in `media/stream_protocols/twilio.py`, signature
                 algorithm `security/signatures/twilio.py`, emulator `sim/twilio/`, protocol
                 notes `docs/carriers.md` §1; shared with the other carriers: the Polly voice
                 table `providers/voices.py`, number routes `voice_call/numbers.py`.
"""

from voice_call.providers.twilio.provider import TwilioProvider, build

__all__ = ["TwilioProvider", "build"]
