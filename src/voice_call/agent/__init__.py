"""The agent: what the bot says on a call (the engine) and how an AI agent drives calls (the faces).

The engine, used by the manager's auto-reply pipeline (manager/replies.py):

- `responders/`  turn the conversation so far into the next thing to say, streamed sentence by
                 sentence: `base.py` (protocol, context, error), `echo.py`, `openai.py`,
                 `hook.py`, and `factory.py` (the one a config asks for);
- `prompt.py`    per call: the agent, model, system prompt and timeout (a number's overrides
                 first);
- `spoken.py`    the spoken-output contract: only a reply's spoken words are said;
- `memory.py`    lines from earlier calls with the same memory key (agent + `sessionKey` or
                 `sessionScope`).

Sentences are cut by speech/sentences.py, the one set of sentence rules that speech playback
uses too.

The faces, two of the four ways in (the CLI and the RPC API are the others), each a client of
a running `voicecall serve` through the command layer, so results and errors are identical:

- `tool.py`        the `voice_call` agent tool: its JSON schema and `run_tool`;
- `mcp_server.py`  the same actions as MCP tools (`voicecall mcp`).

The faces never import the engine, nor the engine the faces.
"""
