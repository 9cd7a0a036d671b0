"""Small helpers the test suites share."""

from __future__ import annotations

import copy
import socket
from typing import Any


def free_port() -> int:
    """A port free on 127.0.0.1 right now (for a server whose URL must be known up front)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` deep-merged over a copy of `base` (config overrides in tests)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
