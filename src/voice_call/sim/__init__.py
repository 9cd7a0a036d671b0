"""Local stand-ins for everything a call touches outside this machine, speaking the real protocols.

- `twilio/`, `telnyx/`, `plivo/`  carrier emulators; the same job has the same file name in each
                                  (emulator, rest, call, webhooks, markup, stream); see
                                  docs/sim.md.
- `openai/`, `elevenlabs.py`      fake AI services (`ai_http.py`: their shared HTTP plumbing).
- `server.py`                     `LoopbackService`: start/stop, `url`, `async with` for all.
- `common.py`                     what every carrier emulator records (`EmulatedCall`, webhooks).
- `callee.py`, `voice.py`         the simulated person on the line and its voice.
"""
