"""A local Plivo (`PlivoEmulator`): Voice API REST, Plivo XML, signed callbacks and audio streams.

- `emulator.py`  the emulator: its calls, start/stop.
- `rest.py`      the Voice API subset it serves (`build_rest_app(backend)`).
- `markup.py`    Plivo XML run element by element against the simulated callee.
- `call.py`      one call: settings, how it may end, the params it sends.
- `webhooks.py`  requests to the application: signed, logged, retried like Plivo.
- `stream.py`    the emulator's side of an audio stream (`<Stream>`).
"""

from voice_call.sim.plivo.emulator import PlivoEmulator

__all__ = ["PlivoEmulator"]
