"""A fake Gemini Live service (`FakeGeminiLive`) on a loopback port, speaking the real protocol.

- `server.py`   the server, its route and the controls tests use (errors, goAway, session end).
- `live.py`     one `BidiGenerateContent` session: setup checks, VAD, scripted turns.
"""

from voice_call.sim.google.live import FunctionCall, LiveScript, LiveSession, Reply
from voice_call.sim.google.server import FakeGeminiLive

__all__ = ["FakeGeminiLive", "FunctionCall", "LiveScript", "LiveSession", "Reply"]
