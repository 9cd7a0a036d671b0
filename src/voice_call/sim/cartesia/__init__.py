"""A fake Cartesia API (`FakeCartesia`) on a loopback port, speaking Cartesia's wire protocol.

- `server.py`  the server, its auth and its route.
- `tts.py`     the text-to-speech WebSocket (`/tts/websocket`): contexts, continuations, flushes.
"""

from voice_call.sim.cartesia.server import FakeCartesia
from voice_call.sim.cartesia.tts import CartesiaSocketLog

__all__ = ["CartesiaSocketLog", "FakeCartesia"]
