"""A local Twilio (`TwilioEmulator`): REST calls, TwiML execution, signed webhooks, Media Streams.

- `emulator.py`  the emulator: calls, legs, the simulated callee, start/stop.
- `rest.py`      the REST subset it serves (`build_rest_app(backend)`).
- `markup.py`    TwiML parsed into verbs and run against one call.
- `stream.py`    Twilio's side of a bidirectional `<Connect><Stream>` Media Stream.
"""

from voice_call.sim.twilio.emulator import TwilioEmulator

__all__ = ["TwilioEmulator"]
