"""Per-call stream tokens: signed, short-lived, bound to the call they were minted for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice_call.security.stream_tokens import StreamTokens, TokenProblem

CALL = "3f1c2b9e-0d6a-4c55-9a8e-1b2c3d4e5f60"


class Now:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def test_a_fresh_token_verifies_for_its_call_only() -> None:
    tokens = StreamTokens("s" * 32)
    token = tokens.mint(CALL)
    assert tokens.check(token).call_id == CALL and tokens.check(token).ok
    assert tokens.check(token, CALL).ok
    other = tokens.check(token, "another-call")
    assert other.problem is TokenProblem.OTHER_CALL and other.call_id == CALL


def test_expiry() -> None:
    now = Now()
    tokens = StreamTokens("s" * 32, ttl_s=30, now=now)
    token = tokens.mint(CALL)
    now.t += 29.5
    assert tokens.check(token).ok
    now.t += 0.5
    assert tokens.check(token).problem is TokenProblem.EXPIRED


def test_tampering_is_detected() -> None:
    tokens = StreamTokens("s" * 32)
    call, expiry, grant, signature = tokens.mint(CALL).split(".")
    later = str(int(expiry) + 3600)
    assert tokens.check(f"{call}.{later}.{grant}.{signature}").problem is TokenProblem.BAD_SIGNATURE
    swapped = f"{'0' + call[1:]}.{expiry}.{grant}.{signature}"
    assert tokens.check(swapped).problem is TokenProblem.BAD_SIGNATURE
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    assert tokens.check(f"{call}.{expiry}.{grant}.{flipped}").problem is TokenProblem.BAD_SIGNATURE


def test_secrets_decide_who_can_verify() -> None:
    token = StreamTokens("first-secret-0123456789").mint(CALL)
    assert StreamTokens("first-secret-0123456789").check(token).ok  # another instance, same key
    assert not StreamTokens("other-secret-0123456789").check(token).ok
    assert not StreamTokens().check(token).ok  # a random per-process key
    with pytest.raises(ValueError, match="at least 16"):
        StreamTokens("short")


def test_missing_and_malformed() -> None:
    tokens = StreamTokens()
    assert tokens.check(None).problem is TokenProblem.MISSING
    assert tokens.check("").problem is TokenProblem.MISSING
    for bad in ("abc", "a.b.c", f"{CALL}.notanumber.{'x' * 43}", "x" * 5000):
        assert tokens.check(bad).problem is TokenProblem.MALFORMED
    with pytest.raises(ValueError, match="cannot be put in a stream token"):
        tokens.mint("bad id with spaces")


@given(st.text(max_size=300))
def test_arbitrary_strings_never_verify_and_never_raise(text: str) -> None:
    check = StreamTokens("s" * 32).check(text, CALL)
    assert not check.ok and check.problem is not None
