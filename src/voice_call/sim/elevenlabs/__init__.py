"""A fake ElevenLabs API (`FakeElevenLabs`) on a loopback port, speaking ElevenLabs' wire protocol.

- `tts.py`  the server and its text-to-speech endpoints (`/v1/text-to-speech/{voice_id}`).
- `stt.py`  the realtime speech-to-text WebSocket (`/v1/speech-to-text/realtime`).
"""

from voice_call.sim.ai_http import LoggedRequest
from voice_call.sim.elevenlabs.stt import SttScript, SttSession
from voice_call.sim.elevenlabs.tts import FakeElevenLabs

__all__ = ["FakeElevenLabs", "LoggedRequest", "SttScript", "SttSession"]
