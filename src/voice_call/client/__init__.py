"""Clients of a running server: `rpc.py` (JSON-RPC + SSE, what the CLI uses) and `api.py`
(`voice_call.Client` / `SyncClient`, the public API for agent frameworks)."""
