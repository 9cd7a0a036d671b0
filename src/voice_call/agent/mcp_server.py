"""The MCP server (a face): the `voice_call` actions as MCP tools, talking to the running server.

Built on the official SDK (`mcp.server.mcpserver.MCPServer`). Every tool is one JSON-RPC call
to `voicecall serve` through the same command layer the CLI and the agent tool use, so results
and errors are identical everywhere; an anticipated failure (bad input, unknown call, no server
running) comes back as a tool error (`isError`) whose text says what to do.

Transports: stdio (`voicecall mcp`), or streamable HTTP (`voicecall mcp --http`). Over HTTP the
endpoint asks for the same bearer token as the RPC API (the `rpc-token` file), since whoever
reaches it can place phone calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

import voice_call
from voice_call.agent.tool import RpcCaller
from voice_call.errors import VoiceCallError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

INSTRUCTIONS = (
    "Place and control real phone calls. initiate_call dials and says a first message; in "
    "conversation mode use continue_call to say something and wait for the person's reply, "
    "speak_to_user to say something without waiting, send_dtmf for touch tones, end_call to "
    "hang up, and get_status to see a call (or all active calls)."
)


Connect = Callable[[], RpcCaller]


def build_mcp_server(connect: Connect) -> MCPServer:
    """An MCP server whose tools call the RPC API through `connect()` (called per tool call, so
    a server started after the MCP server, or restarted, is found)."""
    server = MCPServer(
        "voice-call", instructions=INSTRUCTIONS, version=voice_call.__version__, log_level="WARNING"
    )

    async def rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return await connect().call(method, params)
        except VoiceCallError as exc:
            raise ToolError(exc.message) from None

    @server.tool(
        name="initiate_call",
        description=(
            "Dial a phone number and say `message` when the person answers. mode notify: say "
            "it and hang up; conversation: stay on the line for continue_call. `to` is E.164 "
            "(+15555550123) and defaults to the configured toNumber. Calls placed with the same "
            "sessionKey share conversation memory. `dtmfSequence` (conversation calls): keys "
            "pressed once the callee answers, e.g. ww1234# for a conference bridge. "
            "Returns {callId, initiated}."
        ),
        annotations=ToolAnnotations(title="Place a phone call", destructiveHint=False),
    )
    async def initiate_call(
        message: str,
        to: str | None = None,
        mode: Literal["notify", "conversation"] | None = None,
        sessionKey: str | None = None,
        dtmfSequence: str | None = None,
        language: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"message": message}
        if to:
            params["to"] = to
        if mode:
            params["mode"] = mode
        if sessionKey:
            params["sessionKey"] = sessionKey
        if dtmfSequence:
            params["dtmfSequence"] = dtmfSequence
        if language:
            params["language"] = language
        return await rpc("voicecall.initiate", params)

    @server.tool(
        name="continue_call",
        description=(
            "Say `message` on the call, then wait for and return what the person says back: "
            "{success, transcript}. Waits up to the configured transcriptTimeoutMs."
        ),
        annotations=ToolAnnotations(title="Say something and wait for the reply"),
    )
    async def continue_call(callId: str, message: str) -> dict[str, Any]:
        return await rpc("voicecall.continue", {"callId": callId, "message": message})

    @server.tool(
        name="speak_to_user",
        description="Say `message` on the call without waiting for a reply. Returns {success}.",
        annotations=ToolAnnotations(title="Say something"),
    )
    async def speak_to_user(callId: str, message: str) -> dict[str, Any]:
        return await rpc("voicecall.speak", {"callId": callId, "message": message})

    @server.tool(
        name="send_dtmf",
        description="Send touch-tone digits (0-9 * #, and w, p or , to pause). Returns {success}.",
        annotations=ToolAnnotations(title="Press keys"),
    )
    async def send_dtmf(callId: str, digits: str) -> dict[str, Any]:
        return await rpc("voicecall.dtmf", {"callId": callId, "digits": digits})

    @server.tool(
        name="end_call",
        description="Hang up the call. Ending a call that already ended succeeds.",
        annotations=ToolAnnotations(title="Hang up", destructiveHint=True, idempotentHint=True),
    )
    async def end_call(callId: str) -> dict[str, Any]:
        return await rpc("voicecall.end", {"callId": callId})

    @server.tool(
        name="transfer_call",
        description=(
            "Transfer the caller to a person: to is an E.164 number or a sip: URI; mode cold "
            "(default) connects them at once, warm lets the person hear a summary first; say "
            "is a line the caller hears first. A busy or unanswered person hands the call back."
        ),
        annotations=ToolAnnotations(title="Transfer", destructiveHint=True),
    )
    async def transfer_call(
        callId: str, to: str, mode: str = "cold", say: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"callId": callId, "to": to, "mode": mode}
        if say:
            params["say"] = say
        return await rpc("voicecall.transfer", params)

    @server.tool(
        name="get_status",
        description=(
            "One call's status ({found, call}) or, without callId, every active call "
            "({found, calls}). full=true adds the transcript and per-turn latency."
        ),
        annotations=ToolAnnotations(title="Call status", readOnlyHint=True),
    )
    async def get_status(callId: str | None = None, full: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = {"full": full}
        if callId:
            params["callId"] = callId
        return await rpc("voicecall.status", params)

    return server


def require_bearer(app: ASGIApp, token: str) -> ASGIApp:
    """Refuse HTTP requests without `Authorization: Bearer <token>` (constant-time check)."""
    from starlette.responses import JSONResponse

    from voice_call.security.rpc_token import token_matches

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = ""
            for name, value in scope.get("headers", ()):
                if name == b"authorization":
                    header = value.decode("latin-1")
                    break
            scheme, _, presented = header.partition(" ")
            if scheme.lower() != "bearer" or not token_matches(token, presented.strip()):
                response = JSONResponse(
                    {"error": "missing or wrong bearer token (the rpc-token file)"},
                    401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded
