"""`store: {backend: "redis", url}` in the config: what it needs, what it refuses (with the fix),
and what the runtime builds from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.stack import Cli, base_env, write_config
from voice_call.config import ConfigError, parse_config
from voice_call.config.redact import redacted
from voice_call.store.factory import DEDUPE_TTL_MARGIN_S, build_store, describe_store
from voice_call.store.redis import RedisStore
from voice_call.store.sqlite import SqliteStore

SECRET = {"streaming": {"tokenSecret": "a-shared-secret-of-32-characters"}}
NO_URL = (
    'store.url: required with backend "redis" — set it to the Redis server, e.g.'
    ' "redis://localhost:6379/0"'
)
BAD_SCHEME = (
    'store.url: must be a redis://, rediss:// or unix:// URL — e.g. "redis://localhost:6379/0",'
    ' "rediss://:password@host:6380/0" or "unix:///run/redis.sock"'
)
NO_SECRET = (
    'streaming.tokenSecret: required with store.backend "redis": every instance must verify the'
    " media-stream tokens the others mint — set the same secret on each one, e.g. the output of"
    ' `python -c "import secrets; print(secrets.token_urlsafe(32))"`'
)


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    return info.value.errors


def test_redis_with_a_url_and_a_token_secret_loads() -> None:
    for url in ("redis://r:6379/0", "rediss://:pw@r:6380/2", "unix:///run/redis/redis.sock"):
        config = parse_config({"store": {"backend": "redis", "url": url}, **SECRET}, env={})
        assert (config.store.backend, config.store.url) == ("redis", url)
        assert config.store.prefix == "voicecall"


def test_redis_without_a_url() -> None:
    assert errors_of({"store": {"backend": "redis"}, **SECRET}) == [NO_URL]


@pytest.mark.parametrize(
    "url", ["http://r:6379", "r:6379", "localhost", "memcached://r", "redis+sentinel://r"]
)
def test_redis_with_a_url_of_another_kind(url: str) -> None:
    assert errors_of({"store": {"backend": "redis", "url": url}, **SECRET}) == [BAD_SCHEME]


def test_other_bad_urls() -> None:
    store = {"backend": "redis", "url": "unix://"}
    assert errors_of({"store": store, **SECRET}) == [
        'store.url: names no socket file — e.g. "unix:///run/redis/redis.sock"'
    ]
    store = {"backend": "redis", "url": "redis://r:port/0"}
    (error,) = errors_of({"store": store, **SECRET})
    assert error.startswith("store.url: is not a valid URL (")
    assert error.endswith(') — e.g. "redis://localhost:6379/0"')


def test_redis_without_a_token_secret() -> None:
    store = {"backend": "redis", "url": "redis://r:6379/0"}
    assert errors_of({"store": store}) == [NO_SECRET]
    assert errors_of({"store": store, "streaming": {"tokenSecret": "  "}}) == [NO_SECRET]
    assert errors_of({"store": {"backend": "redis"}}) == [NO_URL, NO_SECRET]


def test_settings_of_the_other_backend_are_refused() -> None:
    assert errors_of({"store": {"url": "redis://r:6379/0"}}) == [
        'store.url: only the Redis store uses it — set backend: "redis" to use Redis, or remove'
        " it (store.path picks the SQLite file)"
    ]
    assert errors_of({"store": {"prefix": "team-a"}}) == [
        'store.prefix: only the Redis store uses it — remove it, or set backend: "redis"'
    ]
    redis_with_path = {"backend": "redis", "url": "redis://r", "path": "/tmp/calls.db"}
    assert errors_of({"store": redis_with_path, **SECRET}) == [
        "store.path: only the SQLite store uses it — remove it (store.url names the Redis server)"
    ]
    bad_prefix = {"backend": "redis", "url": "redis://r", "prefix": "team a"}
    assert errors_of({"store": bad_prefix, **SECRET}) == [
        "store.prefix: may hold only letters, digits, '_', '.' and '-' (1 to 64 of them) — e.g."
        ' "voicecall-prod"'
    ]


def test_the_url_password_is_masked_in_the_shown_config() -> None:
    store = {"backend": "redis", "url": "rediss://:pw-very-secret@r:6380/1"}
    shown = redacted(parse_config({"store": store, **SECRET}, env={}))
    assert shown["store"]["url"] == "rediss://:***@r:6380/1"


def test_the_runtime_builds_the_store_the_config_names(tmp_path: Path) -> None:
    store = {"backend": "redis", "url": "redis://r:6379/3", "prefix": "team-a", "retentionDays": 2}
    built = build_store(parse_config({"store": store, **SECRET}, env={}), tmp_path)
    assert isinstance(built, RedisStore)
    assert (built.url, built.prefix) == ("redis://r:6379/3", "team-a")
    assert built.dedupe_ttl_s == 2 * 86_400 + DEDUPE_TTL_MARGIN_S
    keep_all = {**store, "retentionDays": 0}
    built = build_store(parse_config({"store": keep_all, **SECRET}, env={}), tmp_path)
    assert isinstance(built, RedisStore) and built.dedupe_ttl_s is None
    assert isinstance(build_store(parse_config({}, env={}), tmp_path), SqliteStore)


def test_the_serve_banner_says_where_the_calls_are_without_the_password(tmp_path: Path) -> None:
    store = {"backend": "redis", "url": "rediss://:pw-very-secret@r:6380/1", "prefix": "team-a"}
    config = parse_config({"store": store, **SECRET}, env={})
    assert describe_store(config, tmp_path) == "Redis at rediss://r:6380/1 (keys team-a:*)"
    socket = {"backend": "redis", "url": "unix:///run/redis.sock"}
    config = parse_config({"store": socket, **SECRET}, env={})
    assert describe_store(config, tmp_path) == "Redis at unix:///run/redis.sock (keys voicecall:*)"
    assert describe_store(parse_config({}, env={}), tmp_path) == str(tmp_path / "calls.db")


def test_config_check_names_each_problem(tmp_path: Path) -> None:
    config = write_config(tmp_path / "redis.json5", {"store": {"backend": "redis"}})
    done = Cli(base_env(tmp_path), config).run("config", "check")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"Error: invalid config in {config}:",
        f"  {NO_URL}",
        f"  {NO_SECRET}",
    ]
    good = {"store": {"backend": "redis", "url": "redis://r:6379/0"}, **SECRET}
    done = Cli(base_env(tmp_path), write_config(tmp_path / "ok.json5", good)).run("config", "check")
    assert done.returncode == 0, done.stderr
