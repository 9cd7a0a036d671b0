"""Choose and open the CallStore named by the config (`store`)."""

from __future__ import annotations

from pathlib import Path

from voice_call.config import Config
from voice_call.store.base import CallStore
from voice_call.store.sqlite import SqliteStore

DB_FILE = "calls.db"


def sqlite_path(config: Config, home: Path) -> Path:
    """`store.path` names a folder (the seed's shape) or a `.db` file; default: the state home.
    An existing file is the database itself, whatever its name (opening refuses a file that
    is not SQLite, rather than trying to make a folder of it)."""
    if config.store.path is None:
        return home / DB_FILE
    path = Path(config.store.path).expanduser()
    if path.suffix in (".db", ".sqlite", ".sqlite3") or path.is_file():
        return path
    return path / DB_FILE


def build_store(config: Config, home: Path) -> CallStore:
    # SQLite is the one backend: the config refuses any other (e.g. "redis") at load.
    return SqliteStore(sqlite_path(config, home))
