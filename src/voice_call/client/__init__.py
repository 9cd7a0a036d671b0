"""Clients of a running `voicecall serve`: `api.py` is the public one (`voice_call.Client` and
`voice_call.SyncClient`, for agent frameworks); `rpc.py` the JSON-RPC + SSE transport under it,
which the CLI, the agent tool and the MCP server use directly (`RpcClient`).
"""
