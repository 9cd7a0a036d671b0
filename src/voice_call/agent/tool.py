"""The `voice_call` agent tool (a face: an AI agent places and drives calls through it): its
JSON schema and the code that runs one action.

The schema is in OpenAI function-calling shape. Function parameters cannot be a top-level
`oneOf`, so they are one object with an `action` enum; which other fields an action needs is
stated in the descriptions and checked here at run time. `run_tool` maps each action to a
JSON-RPC method of a running `voicecall serve` and never raises: every failure (bad arguments,
an unknown action, a call that does not exist, no server) comes back as `{"error": "..."}`, so
the agent can read it and decide what to do.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol

TOOL_NAME = "voice_call"

# action → (RPC method, required fields, optional fields)
_ACTIONS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "initiate_call": (
        "voicecall.initiate",
        ("message",),
        ("to", "mode", "sessionKey", "dtmfSequence", "record", "amd", "language"),
    ),
    "continue_call": ("voicecall.continue", ("callId", "message"), ()),
    "speak_to_user": ("voicecall.speak", ("callId", "message"), ()),
    "send_dtmf": ("voicecall.dtmf", ("callId", "digits"), ()),
    "end_call": ("voicecall.end", ("callId",), ()),
    "transfer_call": ("voicecall.transfer", ("callId", "to"), ("mode", "say")),
    "get_status": ("voicecall.status", (), ("callId",)),
}
ACTIONS: tuple[str, ...] = tuple(_ACTIONS)
_FIELDS = (
    "message",
    "to",
    "mode",
    "sessionKey",
    "dtmfSequence",
    "record",
    "amd",
    "language",
    "callId",
    "digits",
    "say",
)
_BOOLEANS = ("record",)
_MODES = ("notify", "conversation")
_TRANSFER_MODES = ("cold", "warm")
_AMD = ("detect", "voicemail-drop", "off")

_DESCRIPTION = (
    "Place and control phone calls. Pick an action and give the fields it needs:\n"
    "- initiate_call: message (what to say when the person answers); optional to "
    "(E.164 number, defaults to the configured toNumber) and mode (notify = say the message "
    "and hang up; conversation = stay on the line) and sessionKey (calls with the same key share "
    "conversation memory) and dtmfSequence (keys pressed once the callee answers, e.g. "
    "ww1234# to join a conference bridge; conversation calls only) and record (true/false: "
    "record this call, over the configured default) and amd (detect: hang up on an answering "
    "machine; voicemail-drop: leave the message after its beep; off) and language (the call's "
    "BCP-47 language, e.g. zh-TW, over the configured one). Returns "
    "{callId, initiated}.\n"
    "- continue_call: callId, message. Says the message, then waits for the person's reply. "
    "Returns {success, transcript}.\n"
    "- speak_to_user: callId, message. Says the message without waiting. Returns {success}.\n"
    "- send_dtmf: callId, digits (0-9 * # and w/p/, for pauses). Returns {success}.\n"
    "- end_call: callId. Hangs up. Returns {success}.\n"
    "- transfer_call: callId, to (E.164 number or sip: URI of the person). Optional mode (cold "
    "= connect the caller straight away, the default; warm = the person first hears a summary "
    "of the call) and say (a line the caller hears first). The bot leaves once they are "
    "connected; if the person is busy or does not answer, the call comes back to you. Returns "
    "{success, status}; follow it with get_status.\n"
    "- get_status: callId. Returns {found, call}; without callId, {found, calls} lists the "
    "active calls.\n"
    "On any failure the result is {error} with a message saying what went wrong."
)


def tool_schema() -> dict[str, Any]:
    """The tool definition in OpenAI function-calling shape."""
    return {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": _DESCRIPTION,
            "parameters": {
                "type": "object",
                "properties": {
                    "action": {
                        "type": "string",
                        "enum": list(ACTIONS),
                        "description": "What to do; see the tool description for the fields "
                        "each action needs.",
                    },
                    "message": {
                        "type": "string",
                        "description": "Text to say on the call (initiate_call, continue_call, "
                        "speak_to_user).",
                    },
                    "to": {
                        "type": "string",
                        "description": "Number to call in E.164 form, e.g. +15555550123 "
                        "(initiate_call; optional when a default number is configured).",
                    },
                    "mode": {
                        "type": "string",
                        "enum": [*_MODES, *_TRANSFER_MODES],
                        "description": "initiate_call: notify (say the message and hang up) or "
                        "conversation (stay on the line for continue_call); transfer_call: cold "
                        "or warm. Optional.",
                    },
                    "say": {
                        "type": "string",
                        "description": "A line the caller hears before the transfer "
                        "(transfer_call; optional).",
                    },
                    "sessionKey": {
                        "type": "string",
                        "description": "Memory session of the call: calls placed with the same "
                        "key share what was said (initiate_call; optional, default: the "
                        "configured sessionScope).",
                    },
                    "dtmfSequence": {
                        "type": "string",
                        "description": "Keys pressed once the callee answers, before the "
                        "greeting: 0-9 * # and w (0.5 s) or W (1 s) pauses, at most 32 "
                        "(initiate_call with mode conversation; optional).",
                    },
                    "record": {
                        "type": "boolean",
                        "description": "Record this call (true) or not (false), over the "
                        "configured recording.enabled (initiate_call; optional).",
                    },
                    "amd": {
                        "type": "string",
                        "enum": list(_AMD),
                        "description": "Answering-machine detection (initiate_call; optional, "
                        "default: the configured outbound.amd): detect = hang up on a machine; "
                        "voicemail-drop = leave the message after the beep; off = none.",
                    },
                    "language": {
                        "type": "string",
                        "description": "The language this call is held in, a BCP-47 tag such "
                        "as en-US or zh-TW (initiate_call; optional, default: the configured "
                        "language).",
                    },
                    "callId": {
                        "type": "string",
                        "description": "The id initiate_call returned (every action except "
                        "initiate_call).",
                    },
                    "digits": {
                        "type": "string",
                        "description": "Touch-tone digits to send: 0-9 * # and w, p or , to "
                        "pause (send_dtmf).",
                    },
                },
                "required": ["action"],
                "additionalProperties": False,
            },
        },
    }


class RpcCaller(Protocol):
    """What runs one JSON-RPC method on `voicecall serve`: client/rpc.py's `RpcClient`, or a
    test double. The MCP server (mcp_server.py) uses it too."""

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]: ...


class _BadArgs(Exception):
    pass


def _request(args: Any) -> tuple[str, dict[str, Any]]:
    """Check the arguments against the chosen action; return (RPC method, params)."""
    if not isinstance(args, dict):
        raise _BadArgs("arguments must be a JSON object with an 'action'")
    action = args.get("action")
    if not isinstance(action, str) or not action:
        raise _BadArgs(f"action is required: one of {', '.join(ACTIONS)}")
    if action not in _ACTIONS:
        raise _BadArgs(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
    unknown = sorted(str(k) for k in args if k != "action" and k not in _FIELDS)
    if unknown:
        raise _BadArgs(f"unknown field(s) {', '.join(unknown)}: allowed are {', '.join(_FIELDS)}")
    method, required, optional = _ACTIONS[action]
    params: dict[str, Any] = {}
    for name in (*required, *optional):
        value = args.get(name)
        if value is None or value == "":
            if name in required:
                raise _BadArgs(f"{action} needs {name}")
            continue
        if name in _BOOLEANS:
            if not isinstance(value, bool):
                raise _BadArgs(f"{name} must be true or false")
        elif not isinstance(value, str):
            raise _BadArgs(f"{name} must be a string")
        params[name] = value
    if "amd" in params:
        if params["amd"] not in _AMD:
            raise _BadArgs(f"amd must be {', '.join(_AMD)}, got {params['amd']!r}")
        if params["amd"] == "off":
            params["amd"] = False  # no detection for this call, whatever the config says
    modes = _TRANSFER_MODES if action == "transfer_call" else _MODES
    if "mode" in params and params["mode"] not in modes:
        raise _BadArgs(f"mode must be {' or '.join(modes)}, got {params['mode']!r}")
    return method, params


async def run_tool(args: dict[str, Any], client: RpcCaller) -> dict[str, Any]:
    """Run one tool call against a running server. Never raises: failures are {"error": ...}."""
    try:
        method, params = _request(args)
    except _BadArgs as exc:
        return {"error": str(exc)}
    try:
        return await client.call(method, params)
    except Exception as exc:  # VoiceCallError, connection errors, anything: the agent must see it
        return {"error": _message(exc)}


def _message(exc: Exception) -> str:
    from voice_call.errors import VoiceCallError

    if isinstance(exc, VoiceCallError):
        return exc.message
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def run_tool_sync(args: dict[str, Any], config_path: str | Path | None = None) -> dict[str, Any]:
    """Python entry point: load the config, connect to the running server, run one action.

    Like `run_tool` it never raises; a bad config file is reported as {"error": ...} too.
    Do not call it from inside a running event loop (use `run_tool` there).
    """
    try:
        _request(args)
    except _BadArgs as exc:  # no need to find a server to say so
        return {"error": str(exc)}
    try:
        from voice_call.client.rpc import RpcClient
        from voice_call.config import ConfigError, load_config, state_home

        try:
            config = load_config(config_path)
        except ConfigError as exc:
            return {"error": "invalid config: " + "; ".join(exc.errors)}
        if not config.enabled:  # as the CLI refuses: nothing is tried while switched off
            return {
                "error": "the voice-call service is switched off (enabled is false in the"
                " config) — set it to true to use the voice_call tool"
            }
        client = RpcClient.from_home(config, state_home())
        return asyncio.run(run_tool(args, client))
    except Exception as exc:
        return {"error": _message(exc)}
