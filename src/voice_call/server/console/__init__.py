"""The web console (`/console`): watch and steer calls in a browser.

`pages.py` serves the HTML (and the login), `api.py` the JSON the pages' scripts read and the
controls they send, `guard.py` the headers, cookie and CSRF rules every answer follows,
`sessions.py` the login links and sessions, `history.py` the search of ended calls. The
scripts and styles are files in `static/`, the page skeletons in `templates/`; nothing is
built at install time and nothing is fetched from elsewhere.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from voice_call.runtime import Runtime
from voice_call.server.console.api import ConsoleApi
from voice_call.server.console.listen import ListenIn
from voice_call.server.console.pages import ConsolePages
from voice_call.server.console.sessions import ConsoleSessions
from voice_call.server.events import EventsRoute
from voice_call.server.limits import Limits


def console_routes(
    runtime: Runtime, events: EventsRoute, limits: Limits, sessions: ConsoleSessions | None = None
) -> list[BaseRoute]:
    sessions = sessions or ConsoleSessions()
    pages = ConsolePages(runtime, sessions, limits)
    api = ConsoleApi(runtime, sessions, events, limits)
    listen_in = ListenIn(runtime, sessions)
    return [
        Route("/console", pages.calls, methods=["GET"]),
        Route("/console/calls/{call_id}", pages.call, methods=["GET"]),
        Route("/console/login", pages.link_login, methods=["GET"]),
        Route("/console/login", pages.token_login, methods=["POST"]),
        Route("/console/logout", pages.logout, methods=["POST"]),
        Route("/console/static/{name}", pages.static, methods=["GET"]),
        Route("/console/api/calls", api.calls, methods=["GET"]),
        Route("/console/api/calls/{call_id}", api.call, methods=["GET"]),
        Route("/console/api/calls/{call_id}/listen", listen_in.listen, methods=["POST"]),
        Route("/console/api/history", api.history, methods=["GET"]),
        Route("/console/api/events", api.stream, methods=["GET"]),
        Route("/console/api/commands/{name}", api.command, methods=["POST"]),
        Route("/console/api/login-links", api.login_link, methods=["POST"]),
    ]
