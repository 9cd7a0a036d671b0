"""`voicecall console`: a one-time login link to the running server's web console.

The link is minted by the server (`POST /console/api/login-links`, with the RPC token this
command reads from the state folder), works once, within 60 s, and is printed; the browser
opens it too when there is one to open (a desktop session), unless `--no-open`.
"""

from __future__ import annotations

import os
import sys

import click

from voice_call.cli.common import json_flag, print_json, reported, root_settings, run
from voice_call.cli.i18n import _


@click.command(
    help=_(
        "Open the web console of the running server (prints a one-time login link).\n\n"
        "The link logs one browser in, once, within 60 s. Start the server first with\n"
        "`voicecall serve`."
    )
)
@json_flag
@click.option("--no-open", is_flag=True, help=_("Print the link only; do not open a browser."))
@reported
def console(no_open: bool) -> None:
    url = run(_login_link())
    opened = False if no_open else _open(url)
    if root_settings().as_json:
        print_json({"url": url, "expiresInS": 60, "opened": opened})
        return
    click.echo(url)
    click.echo(
        _("Opened in your browser.")
        if opened
        else _("Open this link in a browser (works once, 60 s)."),
        err=True,
    )


async def _login_link() -> str:
    import httpx

    from voice_call.client.rpc import CONNECT_TIMEOUT_S, RpcClient, ServerUnavailable
    from voice_call.errors import Unavailable

    settings = root_settings()
    client = RpcClient.from_home(settings.config(), settings.home())
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=CONNECT_TIMEOUT_S)) as http:
            response = await http.post(
                f"{client.url}/console/api/login-links",
                headers={"Authorization": f"Bearer {client.token}"},
            )
    except httpx.TransportError as exc:
        raise ServerUnavailable(client.url, str(exc) or type(exc).__name__) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    if response.status_code != 200 or not isinstance(body.get("path"), str):
        reason = body.get("error") or f"HTTP {response.status_code}"
        raise Unavailable(
            _(
                "the server refused a console login link ({reason}) — is it a voicecall serve "
                "of this version?"
            ).format(reason=reason)
        )
    return f"{client.url}{body['path']}"


def _open(url: str) -> bool:
    """Open `url` in a graphical browser; False where none can be shown (a server shell,
    where `webbrowser` would fall back to a text browser in this terminal)."""
    import webbrowser

    graphical = sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if not graphical:
        return False
    try:
        return bool(webbrowser.open(url, new=2))
    except webbrowser.Error:
        return False
