"""A local Twilio (`TwilioEmulator`): REST calls, TwiML execution, signed webhooks, Media Streams.

- `emulator.py`  the emulator: its calls from REST request to hang-up, start/stop.
- `rest.py`      the REST subset it serves (`build_rest_app(backend)`).
- `call.py`      one call: Twilio's bookkeeping (`TwilioLeg`) and its side of running TwiML.
- `markup.py`    TwiML parsed into verbs and run against one call.
- `webhooks.py`  requests to the application: TwiML fetches, status and stream callbacks, signed.
- `stream.py`    Twilio's side of a bidirectional `<Connect><Stream>` Media Stream.
"""

from voice_call.sim.twilio.emulator import TwilioEmulator

__all__ = ["TwilioEmulator"]
