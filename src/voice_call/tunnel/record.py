"""`exposure.json` in the state folder: the public URLs a running server gave its carrier.

A tunnel's URL (a random ngrok name, this node's Tailscale name) is known only inside the
server process; `voicecall setup` reads it here to test that the URL really reaches the server.
Written by the Runtime when it starts and whenever the URL changes, removed when it stops.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

EXPOSURE_FILE = "exposure.json"


def record_exposure(home: Path, **fields: Any) -> None:
    """Atomically replace the record with `fields` (camelCase keys) and this process's pid."""
    path = home / EXPOSURE_FILE
    tmp = path.with_name(f".{EXPOSURE_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps({**fields, "pid": os.getpid()}) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_exposure(home: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((home / EXPOSURE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def forget_exposure(home: Path) -> None:
    """Remove the record if it is still this process's (another server may have replaced it)."""
    data = read_exposure(home)
    if data is not None and data.get("pid") == os.getpid():
        (home / EXPOSURE_FILE).unlink(missing_ok=True)
