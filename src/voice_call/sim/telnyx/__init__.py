"""A local Telnyx (`TelnyxEmulator`): Call Control v2 REST, Ed25519-signed webhooks, media streams.

- `emulator.py`  the emulator: its calls, start/stop.
- `rest.py`      the REST subset it serves (`build_rest_app(backend)`), Telnyx error shapes.
- `commands.py`  the call commands (`POST /v2/calls/{id}/actions/<name>`) and their webhooks.
- `params.py`    request bodies validated the way Telnyx does (422 with a JSON pointer).
- `errors.py`    Telnyx's `{"errors": [...]}` shape.
- `call.py`      one call leg: ids, state, ringing, hang-up.
- `turns.py`     when the simulated callee talks.
- `webhooks.py`  webhook delivery: envelope, signature, order, retries.
- `stream.py`    the emulator's side of a media stream (dials the app's `stream_url`).
"""

from voice_call.sim.telnyx.emulator import TelnyxEmulator

__all__ = ["TelnyxEmulator"]
