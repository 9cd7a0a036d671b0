"""Bearer-token checks for RPC and the event stream (the webhook has carrier signatures)."""

from __future__ import annotations

from starlette.requests import Request

from voice_call.security.rpc_token import token_matches


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authorized(request: Request, expected: str, *, allow_query: bool = False) -> bool:
    """Constant-time check; `?token=` only where browsers cannot set headers (EventSource)."""
    if not expected:  # a runtime that never started has no token: refuse, don't match ""
        return False
    presented = bearer_token(request)
    if presented is None and allow_query:
        presented = request.query_params.get("token")
    return token_matches(expected, presented)


UNAUTHORIZED = (
    "missing or wrong bearer token: send `Authorization: Bearer <token>` "
    "(the token is the rpc-token file in the state folder)"
)
