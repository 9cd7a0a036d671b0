"""Responders: the conversation so far in, the next thing to say out (auto-response)."""
