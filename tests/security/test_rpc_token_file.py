"""The RPC bearer token file: created once, owner-only, never replaced; the first writer wins a
race; an empty or missing file is no token; a presented token must match exactly."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from voice_call.security import rpc_token
from voice_call.security.rpc_token import (
    TOKEN_FILE,
    ensure_rpc_token,
    read_rpc_token,
    token_matches,
    token_path,
)


def test_the_first_start_creates_an_owner_only_token(tmp_path: Path) -> None:
    home = tmp_path / "not-yet" / "state"
    token = ensure_rpc_token(home)
    assert token_path(home) == home / "rpc-token" and TOKEN_FILE == "rpc-token"
    assert len(token) == 43  # 32 random bytes, base64url
    assert (home / "rpc-token").read_text(encoding="utf-8") == token + "\n"
    assert stat.S_IMODE((home / "rpc-token").stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert sorted(p.name for p in home.iterdir()) == ["rpc-token"]  # no temporary file left


def test_later_starts_keep_the_token(tmp_path: Path) -> None:
    first = ensure_rpc_token(tmp_path)
    assert ensure_rpc_token(tmp_path) == first
    assert read_rpc_token(tmp_path) == first
    other = tmp_path / "other"
    assert ensure_rpc_token(other) != first


def test_an_existing_token_is_read_stripped(tmp_path: Path) -> None:
    (tmp_path / "rpc-token").write_text("  my-token \n", encoding="utf-8")
    assert read_rpc_token(tmp_path) == "my-token"
    assert ensure_rpc_token(tmp_path) == "my-token"


def test_an_empty_or_missing_file_is_no_token(tmp_path: Path) -> None:
    assert read_rpc_token(tmp_path) is None
    (tmp_path / "rpc-token").write_text("\n", encoding="utf-8")
    assert read_rpc_token(tmp_path) is None


def test_the_first_writer_wins_a_race(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    link = os.link

    def lose_the_race(src: str | Path, dst: str | Path) -> None:
        Path(dst).write_text("theirs\n", encoding="utf-8")  # another process got there first
        link(src, dst)

    monkeypatch.setattr(rpc_token.os, "link", lose_the_race)
    assert ensure_rpc_token(tmp_path) == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rpc-token"]


def test_a_presented_token_must_match_exactly() -> None:
    assert token_matches("secret-token", "secret-token")
    assert not token_matches("secret-token", None)
    assert not token_matches("secret-token", "")
    assert not token_matches("secret-token", "secret-token2")
    assert not token_matches("secret-token", "secret-toke")
