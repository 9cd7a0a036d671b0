"""Errors every face (CLI, RPC, tool, MCP) reports the same way. Imports nothing of ours."""

from __future__ import annotations


class VoiceCallError(Exception):
    """A failure with a stable machine code and a message meant for a person."""

    code = "unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(VoiceCallError):
    code = "invalid_request"


class NotFound(VoiceCallError):
    code = "not_found"


class Conflict(VoiceCallError):
    """The call is in a state that does not allow this now (ended, a turn already waiting)."""

    code = "conflict"


class Unavailable(VoiceCallError):
    """The service or carrier cannot do it now (capacity, carrier error, shutting down)."""

    code = "unavailable"


class TimedOut(VoiceCallError):
    """Waited as long as configured (e.g. transcriptTimeoutMs) without an answer."""

    code = "timeout"


# Every error class by its stable code: a VoiceCallError sent as JSON (an RPC reply, a reply
# from another instance) is rebuilt as the same class.
BY_CODE: dict[str, type[VoiceCallError]] = {
    cls.code: cls for cls in (InvalidInput, NotFound, Conflict, TimedOut, Unavailable)
}
