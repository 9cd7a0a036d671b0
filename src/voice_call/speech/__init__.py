"""Speech for streamed calls: text-to-speech engines (`tts/`) and streaming speech-to-text
sessions (`stt/`), each with a fake, and `stack.SpeechStack`, which builds them from config."""
