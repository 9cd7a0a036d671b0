"""A fake Deepgram API (`FakeDeepgram`) on a loopback port, speaking Deepgram's wire protocol.

- `server.py`  the server, its routes and the handles tests use.
- `listen.py`  the live transcription WebSocket `/v1/listen` (energy VAD, scripted words).
- `speak.py`   Aura text-to-speech, `POST /v1/speak`, streamed.
- `errors.py`  Deepgram's error shape and `Token` auth.
"""

from voice_call.sim.deepgram.listen import ListenScript, ListenStream, ListenTurn
from voice_call.sim.deepgram.server import FakeDeepgram
from voice_call.sim.deepgram.speak import SpeakScript

__all__ = ["FakeDeepgram", "ListenScript", "ListenStream", "ListenTurn", "SpeakScript"]
