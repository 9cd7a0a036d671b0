"""A fake OpenAI API (`FakeOpenAI`) on a loopback port, speaking OpenAI's real wire protocol.

- `server.py`           the server and its routes.
- `chat.py`             `POST /v1/chat/completions` (SSE streaming or whole).
- `speech.py`           `POST /v1/audio/speech`.
- `realtime.py`         the Realtime transcription WebSocket; `realtime_config.py` its session
                        settings in both wire dialects; `vad.py` its input audio and energy VAD.
- `conversation.py`     the Realtime speech-to-speech WebSocket (`?model=…`), built on it.
- `errors.py`           OpenAI's error shape and Bearer auth.
"""

from voice_call.sim.openai.chat import ChatScript
from voice_call.sim.openai.conversation import ConversationScript, ToolCall
from voice_call.sim.openai.realtime import TranscriptionScript
from voice_call.sim.openai.server import FakeOpenAI
from voice_call.sim.openai.speech import SpeechScript

__all__ = [
    "ChatScript",
    "ConversationScript",
    "FakeOpenAI",
    "SpeechScript",
    "ToolCall",
    "TranscriptionScript",
]
