"""The bearer token that guards the JSON-RPC API, kept in the state folder with mode 0600."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

TOKEN_FILE = "rpc-token"


def token_path(home: Path) -> Path:
    return home / TOKEN_FILE


def ensure_rpc_token(home: Path) -> str:
    """Read the token, creating it (atomically, owner-only) on first start."""
    path = token_path(home)
    existing = read_rpc_token(home)
    if existing:
        return existing
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    try:
        os.link(tmp, path)  # fails if another process won the race: use theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return read_rpc_token(home) or token


def read_rpc_token(home: Path) -> str | None:
    try:
        return token_path(home).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def token_matches(expected: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())
