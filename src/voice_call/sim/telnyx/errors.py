"""Telnyx API errors: `{"errors": [{"code", "title", "detail", "meta"?, "source"?}]}`.

Codes 10004/10005/10009/10015/10016 and their titles are the documented general API codes
(developers.telnyx.com "API error codes"). Which HTTP status goes with a validation failure is
not documented per endpoint: 422 is what the SDK docs list for validation errors [S].
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class TelnyxErrorReply(Exception):
    """The emulator refuses a request: raised anywhere, answered as Telnyx's error body."""

    def __init__(
        self, status: int, code: str, title: str, detail: str, pointer: str | None = None
    ) -> None:
        super().__init__(f"{status} {code} {title}: {detail}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.pointer = pointer

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
            "meta": {"url": f"https://developers.telnyx.com/docs/overview/errors/{self.code}"},
        }
        if self.pointer is not None:
            error["source"] = {"pointer": self.pointer}
        return JSONResponse({"errors": [error]}, status_code=self.status)


def unauthorized() -> TelnyxErrorReply:
    return TelnyxErrorReply(
        401,
        "10009",
        "Authentication failed",
        "The required authentication headers were either invalid or not included in the request.",
    )


def not_found(
    detail: str = "The requested resource or URL could not be found.",
) -> TelnyxErrorReply:
    return TelnyxErrorReply(404, "10005", "Resource not found", detail)


def missing(field: str) -> TelnyxErrorReply:
    return TelnyxErrorReply(
        422,
        "10004",
        "Missing required parameter",
        f"The '{field}' parameter is required.",
        f"/{field}",
    )


def invalid(field: str, detail: str) -> TelnyxErrorReply:
    return TelnyxErrorReply(422, "10015", "Bad Request", detail, f"/{field}")


def bad_number(field: str) -> TelnyxErrorReply:
    return TelnyxErrorReply(
        422,
        "10016",
        "Phone number must be in +E.164 format",
        f"The '{field}' parameter must be a +E.164 number or a SIP URI.",
        f"/{field}",
    )


def call_ended() -> TelnyxErrorReply:
    # 90018 and 422 are corroborated only by third-party code [M] (docs/carriers.md §2.1).
    return TelnyxErrorReply(
        422,
        "90018",
        "Call has already ended",
        "This call is no longer active and can't receive commands.",
    )


def wrong_state(detail: str) -> TelnyxErrorReply:
    # The exact code for "call not in a state for this command" is undocumented [M].
    return TelnyxErrorReply(422, "10015", "Bad Request", detail)
