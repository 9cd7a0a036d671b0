"""The carrier webhook route, in the order of the security layers (docs/security.md).

gate (required signature headers, 401 before the body) → in-flight limit (429) → body cap and
timeout (413/408) → signature verification (401) → replay cache (a replay changes nothing and
gets the first answer) → parse (400) → apply each event through the manager, in order.
If applying fails (e.g. the store is down) the replay reservation is released and the answer
is 503, so the carrier's retry is processed once state can be made durable. A shared replay
cache (Redis, cluster/replay.py) that cannot be reached is a 503 too, with nothing applied.

The route is a plain ASGI endpoint, reached straight from the app (server/app.py) with no
Starlette Request or middleware on the way: it reads the scope's headers once, into one dict.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from voice_call.errors import Unavailable
from voice_call.providers.base import Verification, WebhookError, WebhookRequest, WebhookResult
from voice_call.runtime import Runtime
from voice_call.security.exposure import forwarding_trust
from voice_call.security.public_url import HostNotAllowed
from voice_call.security.replay import CachedResponse
from voice_call.server.limits import (
    BodyRejected,
    InFlightLimiter,
    Limits,
    client_key,
    receive_body,
)
from voice_call.server.responses import json_error

if TYPE_CHECKING:
    from voice_call.server.metrics import Metrics

log = logging.getLogger("voice_call.server.webhook")
# What Starlette's outermost middleware (ServerErrorMiddleware) answers for an exception.
SERVER_ERROR = PlainTextResponse("Internal Server Error", status_code=500)


def has_required_headers(groups: tuple[tuple[str, ...], ...], headers: Mapping[str, str]) -> bool:
    """True when any one group of header names is fully present (non-empty); no groups: True."""
    if not groups:
        return True
    return any(all(headers.get(name.lower()) for name in group) for group in groups)


def received_url(scope: Scope, headers: Mapping[str, str]) -> str:
    """scheme://host/path?query exactly as received: signatures are computed over this."""
    host = headers.get("host")
    if not host:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    path = raw_path.split(b"?", 1)[0].decode("latin-1")  # some servers leave the query on
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")


def lowered_headers(scope: Scope) -> dict[str, str]:
    """An ASGI scope's headers by lower-case name; the first of repeated headers wins, as
    Starlette's `Headers.get` reads them."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


_URL = re.compile(r"\s*(?:\bfor\s+)?\(?\b[A-Za-z][A-Za-z0-9+.-]*://[^\s)]*\)?")


def without_urls(reason: str) -> str:
    """A refusal's reason as a 401 body: the URL we verified against (reconstructed from the
    request's headers, naming our paths) is logged, never echoed to whoever sent it."""
    return _URL.sub("", reason).strip() or "Unauthorized"


def unverified_key(request: WebhookRequest) -> str:
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.url.encode(), request.body):
        digest.update(part + b"\n")
    return "unverified:" + digest.hexdigest()


class WebhookRoute:
    def __init__(self, runtime: Runtime, limits: Limits, limiter: InFlightLimiter) -> None:
        self.runtime = runtime
        self.limits = limits
        self.limiter = limiter
        self.trust = forwarding_trust(runtime.config)
        self._metrics_obj: Metrics | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self._handle(scope, receive)
        except Exception:
            # Nothing of ours should get here; re-raised for the server to log it.
            await SERVER_ERROR(scope, receive, send)
            raise
        self._metrics().webhook(response.status_code)
        await response(scope, receive, send)

    def _metrics(self) -> Metrics:
        """Webhooks by result (GET /metrics); looked up once, not per request."""
        if self._metrics_obj is None:
            from voice_call.server.metrics import metrics_for

            self._metrics_obj = metrics_for(self.runtime)
        return self._metrics_obj

    async def _handle(self, scope: Scope, receive: Receive) -> Response:
        headers = lowered_headers(scope)
        provider = self.runtime.provider
        skip = self.runtime.config.skip_signature_verification
        if not skip and not has_required_headers(provider.required_headers, headers):
            return json_error(401, "missing signature headers")
        client = scope.get("client")
        remote: str | None = client[0] if client else None
        with self.limiter.slot(client_key(remote, headers, self.trust)) as admitted:
            if not admitted:
                return json_error(429, "too many requests in flight from this client")
            try:
                body = await receive_body(
                    receive,
                    headers.get("content-length"),
                    self.limits.webhook_max_bytes,
                    self.limits.body_timeout_s,
                )
            except BodyRejected as exc:
                return json_error(exc.status_code, exc.message)
            incoming = WebhookRequest(
                method=scope["method"],
                url=received_url(scope, headers),
                headers=headers,
                body=body,
                remote=remote,
            )
            return await self._process(incoming)

    async def _process(self, incoming: WebhookRequest) -> Response:
        verification = self._verify(incoming)
        if not verification.ok or not verification.request_key:
            reason = verification.reason or "Unauthorized"
            log.warning("webhook refused (401): %s", reason)  # the URL checked, for operators
            return json_error(401, without_urls(reason))
        key = verification.request_key
        replay = self.runtime.replay
        try:
            seen, cached = await replay.reserve(key)
        except Unavailable as exc:  # a shared cache that is down: nothing applied, retry later
            log.warning("webhook replay check failed (503): %s", exc)
            return json_error(503, "could not check for a replay now; retry later")
        if seen:
            log.info("replayed webhook %s: nothing applied", key[:32])
            if cached is not None:
                return Response(cached.body, cached.status_code, media_type=cached.content_type)
            if replay.retry_while_pending:  # the instance processing it may yet fail or die
                return json_error(503, "the first delivery is still being processed; retry later")
            return Response(b"", 200)  # the first delivery is still being processed here
        # Anything but the provider's answer (a parse error, a store failure, a cancelled
        # task) frees the key, so the carrier's retry is processed rather than ignored.
        try:
            answer = await self._apply(incoming, key)
        except WebhookRefused as exc:
            await self._release(key)
            return json_error(exc.status_code, exc.message)
        except BaseException:
            await self._release(key)
            raise
        try:
            await replay.complete(key, answer)
        except Unavailable as exc:  # applied and durable: answer it; a replay is then retried
            log.warning("webhook answer not cached for replays: %s", exc)
        return Response(answer.body, answer.status_code, media_type=answer.content_type)

    async def _release(self, key: str) -> None:
        """Free the key so the retry is processed; a shared cache that is down lets its
        reservation expire instead (cluster/replay.py keeps a pending one briefly)."""
        try:
            await self.runtime.replay.release(key)
        except Unavailable as exc:
            log.warning("webhook replay key not released: %s", exc)

    async def _apply(self, incoming: WebhookRequest, key: str) -> CachedResponse:
        """Parse and apply; the provider's answer, to be cached for replays."""
        try:
            result = self.runtime.provider.parse_webhook(incoming, key)
        except WebhookError as exc:
            raise WebhookRefused(400, str(exc)) from None
        except (ValueError, RecursionError) as exc:
            # A parser that let a decoding error through (json.loads raises a bare ValueError
            # for a >4300-digit number, RecursionError for deep nesting): still the body's fault.
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise WebhookRefused(400, f"body could not be parsed: {reason}") from None
        outcomes: list[str] = []
        try:
            for event in result.events:
                outcomes.append(await self.runtime.handle_event(event))
        except Exception:
            log.exception("webhook events could not be applied; asking the carrier to retry")
            raise WebhookRefused(503, "could not record the event now; retry later") from None
        # Some answers depend on what the manager decided (TwiML/XML for an accepted or
        # refused inbound call), so the provider shapes its reply after the events applied.
        result = self.runtime.provider.webhook_response(incoming, result, outcomes)
        return render(result, outcomes)

    def _verify(self, incoming: WebhookRequest) -> Verification:
        try:
            verification = self.runtime.provider.verify_webhook(incoming)
        except HostNotAllowed as exc:
            log.warning("webhook for host %r refused: %s", incoming.headers.get("host"), exc)
            verification = Verification(ok=False, reason=str(exc))
        except Exception:  # fail closed: a verifier that breaks on odd input does not pass it
            log.exception("webhook verification failed with an error")
            verification = Verification(ok=False, reason="signature could not be verified")
        if verification.ok or not self.runtime.config.skip_signature_verification:
            return verification
        # Development mode: unsigned requests pass, but replays are still recognised.
        log.warning("webhook signature not verified (skipSignatureVerification is on)")
        return Verification(ok=True, request_key=unverified_key(incoming))


class WebhookRefused(Exception):
    """A webhook we answer with `status_code` and `message` instead of handling it."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def render(result: WebhookResult, outcomes: list[str]) -> CachedResponse:
    """The provider's answer; a JSON answer left empty reports each event's outcome."""
    body = result.body
    if not body and result.content_type == "application/json":
        body = json.dumps({"results": outcomes}, ensure_ascii=True)
    return CachedResponse(result.status_code, body, result.content_type)
