"""Responders turn the conversation so far into the next thing to say (auto-response).

A responder streams its reply as sentence chunks (`stream`), so speech can start on the first
sentence while the rest is still being generated. Three ship with the service:

- `echo.py`    repeats the caller's last line: no keys, for the demo, offline work and tests;
- `openai.py`  asks any OpenAI-compatible chat model (`responder.provider: openai`);
- `hook.py`    POSTs the turn to a URL of yours and speaks what it answers (`provider: hook`).

`base.py` holds what they share (the `Responder` protocol, `ReplyContext`, `ResponderError`);
`factory.py` builds the one a config asks for. The manager runs the responder
(manager/replies.py), enforces `responseTimeoutMs`, drops a reply the caller talked over, and
says an apology when a responder fails (raises) or runs out of time.
"""
