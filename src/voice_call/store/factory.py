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


def describe_store(config: Config, home: Path) -> str:
    """Where the calls are, for people (the `serve` banner): never the Redis password."""
    if config.store.backend == "redis" and config.store.url is not None:
        from voice_call.store.redis import where

        return f"Redis at {where(config.store.url)} (keys {config.store.prefix}:*)"
    return str(sqlite_path(config, home))


# An ended call's dedupe keys outlive the retention window by this much in Redis, so `prune`
# (which deletes them with their call) always comes first.
DEDUPE_TTL_MARGIN_S = 86_400


def build_store(config: Config, home: Path) -> CallStore:
    store = config.store
    if store.backend == "redis":
        from voice_call.store.redis import RedisStore  # the redis client only when used

        assert store.url is not None  # the config requires it with redis
        days = store.retention_days
        ttl = days * 86_400 + DEDUPE_TTL_MARGIN_S if days > 0 else None
        return RedisStore(store.url, prefix=store.prefix, dedupe_ttl_s=ttl)
    return SqliteStore(sqlite_path(config, home))
