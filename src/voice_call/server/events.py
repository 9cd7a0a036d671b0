"""GET /events: the event log as Server-Sent Events, backlog first, then live.

The stream subscribes to the bus *before* reading the backlog, so an entry logged in between
is either in the backlog or in the queue (the queue's copy is skipped by seq). Each entry is
`id: <seq>`, `event: <type>`, `data: <LoggedEvent JSON>`; the stream opens with a bare `id:`
line naming where it starts, so a client that saw nothing yet can still resume exactly.
If the bus cuts a slow subscriber off, or the server stops, the stream ends and the client
reconnects with `since=<last id>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from voice_call.runtime import Runtime
from voice_call.server.auth import UNAUTHORIZED, authorized
from voice_call.server.event_log import events_after, last_events
from voice_call.server.responses import json_error
from voice_call.store.base import LoggedEvent

KEEPALIVE_S = 15.0
MAX_LAST = 10_000
_INT = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class Query:
    since: int | None
    last: int | None
    call_id: str | None


class BadEventsQuery(ValueError):
    pass


def parse_query(request: Request) -> Query:
    params = request.query_params

    def number(name: str, raw: str | None) -> int | None:
        if raw is None:
            return None
        if not _INT.fullmatch(raw):
            raise BadEventsQuery(f"{name} must be a non-negative integer")
        return int(raw)

    resume = request.headers.get("last-event-id")
    if resume is not None:
        # EventSource sends this by itself when it reconnects; it wins over the URL's own
        # since/last, which describe where the first connection started.
        return Query(number("Last-Event-ID", resume), None, _call_id(params.get("callId")))
    since = number("since", params.get("since"))
    last = number("last", params.get("last"))
    if since is not None and last is not None:
        raise BadEventsQuery("pass since or last, not both")
    if last is not None and not 1 <= last <= MAX_LAST:
        raise BadEventsQuery(f"last must be between 1 and {MAX_LAST}")
    return Query(since, last, _call_id(params.get("callId")))


def _call_id(raw: str | None) -> str | None:
    if raw is not None and not 1 <= len(raw) <= 128:
        raise BadEventsQuery("callId must be 1 to 128 characters")
    return raw


def frame(event: LoggedEvent) -> str:
    kind = re.sub(r"[\r\n]", "", event.type)
    data = json.dumps(event.wire(), ensure_ascii=True, separators=(",", ":"))
    return f"id: {event.seq}\nevent: {kind}\ndata: {data}\n\n"


class EventsRoute:
    def __init__(self, runtime: Runtime, keepalive_s: float = KEEPALIVE_S) -> None:
        self.runtime = runtime
        self.keepalive_s = keepalive_s
        self._queues: set[asyncio.Queue[LoggedEvent | None]] = set()
        self._closing = False

    async def handle(self, request: Request) -> Response:
        if not authorized(request, self.runtime.rpc_token, allow_query=True):
            return json_error(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
        return self.respond(request)

    def respond(self, request: Request) -> Response:
        """The stream for a request already authorised (by the token here, or a console
        session in `server/console/`)."""
        try:
            query = parse_query(request)
        except BadEventsQuery as exc:
            return json_error(400, str(exc))
        if self._closing:
            return json_error(503, "the server is shutting down")
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        if request.method == "HEAD":  # headers only: a stream nobody reads would never end
            return Response(headers=headers, media_type="text/event-stream")
        return StreamingResponse(
            self._stream(query), media_type="text/event-stream", headers=headers
        )

    async def _stream(self, query: Query) -> AsyncIterator[str]:
        store = self.runtime.store
        async with self.runtime.bus.subscribe() as queue:
            self._queues.add(queue)
            try:
                if query.last is not None:
                    backlog = await last_events(store, query.last, query.call_id)
                    start = backlog[0].seq - 1 if backlog else await store.last_seq()
                else:
                    start = query.since if query.since is not None else await store.last_seq()
                    backlog = None
                yield f"id: {start}\n\n"
                sent = start
                if backlog is None:
                    async for event in events_after(store, start, query.call_id):
                        yield frame(event)
                        sent = event.seq
                else:
                    for event in backlog:
                        yield frame(event)
                        sent = event.seq
                async for chunk in self._live(queue, sent, query.call_id):
                    yield chunk
            finally:
                self._queues.discard(queue)

    async def _live(
        self, queue: asyncio.Queue[LoggedEvent | None], after: int, call_id: str | None
    ) -> AsyncIterator[str]:
        while True:
            try:
                async with asyncio.timeout(self.keepalive_s):
                    event = await queue.get()
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if event is None:  # cut off (fell behind) or shutting down
                return
            if event.seq <= after:  # already sent as part of the backlog
                continue
            if call_id is None or event.call_id == call_id:
                yield frame(event)

    def close(self) -> None:
        """End every open stream now, so a server shutdown does not wait on watchers."""
        self._closing = True
        for queue in list(self._queues):
            with contextlib.suppress(asyncio.QueueEmpty):
                if queue.full():
                    queue.get_nowait()
            queue.put_nowait(None)
