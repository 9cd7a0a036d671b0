"""Public exposure of the webhook server: an in-process ngrok tunnel or Tailscale serve/funnel.

`resolve.py` decides which URL carriers are told to call (publicUrl > tunnel.provider > legacy
tailscale.mode > the local URL) and builds the tunnel that provides it. Every tunnel has the
same small shape, so the Runtime opens and closes any of them the same way, and tests can
hand it a fake.
"""

from __future__ import annotations

from typing import Protocol

from voice_call.errors import Unavailable


class TunnelError(Unavailable):
    """A tunnel could not be opened; the message says what to fix."""


class Tunnel(Protocol):
    name: str  # "ngrok", "tailscale-serve" or "tailscale-funnel"

    async def start(self, local_origin: str) -> str:
        """Expose the server listening at `local_origin` (http://127.0.0.1:3334); returns the
        public webhook URL. Raises TunnelError, leaving nothing open behind."""
        ...

    async def stop(self) -> None:
        """Close what `start` opened. Idempotent; logs problems rather than raising."""
        ...
