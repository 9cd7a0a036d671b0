"""voice-call: phone calls for AI agents.

The public API is `voice_call.Client` / `voice_call.SyncClient` (`client/api.py`), clients of a
running `voicecall serve`; the command line is `cli/` (`voicecall = "voice_call.cli:main"`).
README "Project layout" maps every package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "SyncClient", "__version__"]

if TYPE_CHECKING:
    from voice_call.client.api import Client, SyncClient


def __getattr__(name: str) -> Any:
    # Lazy: `import voice_call` (and so `voicecall --help`) must not pay for httpx and pydantic.
    if name in ("Client", "SyncClient"):
        from voice_call.client import api

        return getattr(api, name)
    raise AttributeError(f"module 'voice_call' has no attribute {name!r}")
