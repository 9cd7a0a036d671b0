"""What a stream token's MAC covers and how long a token lives: the signed message is the
domain label, then call, expiry and grant each ended by a separator (so no two tokens share
a MAC input); tokens live 120 s by default; a secret has at least 16 characters."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from voice_call.security.stream_tokens import (
    ANSWER,
    DEFAULT_TTL_S,
    StreamTokens,
    TokenProblem,
    spent_key,
)

SECRET = "0123456789abcdef-stream-secret"
NOW = 1_700_000_000.0


def _mac(message: bytes) -> str:
    digest = hmac.new(SECRET.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _tokens(now: float = NOW, **kwargs: float) -> StreamTokens:
    return StreamTokens(SECRET, now=lambda: now, **kwargs)


def test_the_signature_is_the_documented_mac_of_label_call_expiry_and_grant() -> None:
    token = _tokens().mint("call-1", grant="g1")
    expiry = int(NOW) + DEFAULT_TTL_S
    signature = _mac(b"voicecall-stream-v1\n" + f"call-1\n{expiry}\ng1".encode())
    assert token == f"call-1.{expiry}.g1.{signature}"


def test_a_mac_without_the_domain_label_does_not_verify() -> None:
    expiry = int(NOW) + 60
    unlabelled = _mac(f"call-1\n{expiry}\ng1".encode())  # the same HMAC key used elsewhere
    check = _tokens().check(f"call-1.{expiry}.g1.{unlabelled}")
    assert check.problem is TokenProblem.BAD_SIGNATURE


def test_a_digit_moved_between_call_id_and_expiry_breaks_the_signature() -> None:
    tokens = _tokens()
    call, expiry, grant, signature = tokens.mint("c1", grant="g1").split(".")
    # Without a separator "c1" + "1700000120" and "c11" + "700000120" would be one MAC input.
    moved = f"{call}{expiry[0]}.{expiry[1:]}.{grant}.{signature}"
    assert tokens.check(moved).problem is TokenProblem.BAD_SIGNATURE


def test_a_character_moved_between_expiry_and_grant_breaks_the_signature() -> None:
    tokens = _tokens()
    call, expiry, grant, signature = tokens.mint("c1", grant="9g").split(".")
    moved = f"{call}.{expiry}9.{grant[1:]}.{signature}"
    assert tokens.check(moved).problem is TokenProblem.BAD_SIGNATURE


def test_tokens_live_120_seconds_by_default() -> None:
    assert DEFAULT_TTL_S == 120
    token = _tokens().mint("call-1")
    assert _tokens(NOW + 119.9).check(token).ok
    assert _tokens(NOW + 120).check(token).problem is TokenProblem.EXPIRED


def test_the_ttl_can_be_set_per_signer_and_per_token() -> None:
    token = _tokens(ttl_s=30).mint("call-1")
    assert _tokens(NOW + 29).check(token).ok
    assert _tokens(NOW + 30).check(token).problem is TokenProblem.EXPIRED
    longer = _tokens(ttl_s=30).mint("call-1", 300)
    assert _tokens(NOW + 299).check(longer).ok
    assert _tokens(NOW + 300).check(longer).problem is TokenProblem.EXPIRED


def test_a_secret_needs_16_characters() -> None:
    StreamTokens("x" * 16)
    with pytest.raises(ValueError, match="at least 16"):
        StreamTokens("x" * 15)
    with pytest.raises(ValueError, match="at least 16"):
        StreamTokens(b"x" * 15)


def test_no_secret_means_a_random_one_per_signer() -> None:
    first, second = StreamTokens(), StreamTokens("")
    token = first.mint("call-1")
    assert first.check(token).ok
    assert second.check(token).problem is TokenProblem.BAD_SIGNATURE


def test_a_verified_token_names_its_call_and_grant() -> None:
    tokens = _tokens()
    check = tokens.check(tokens.mint("call-1", grant=ANSWER), "call-1")
    assert check.ok and check.call_id == "call-1" and check.grant == "answer"
    assert check.problem is None


def test_each_stream_token_gets_its_own_grant() -> None:
    tokens = _tokens()
    grants = {tokens.check(tokens.mint("call-1")).grant or "" for _ in range(5)}
    assert len(grants) == 5
    assert all(len(grant) == 16 for grant in grants)  # 12 random bytes: never guessed


def test_bad_grants_and_call_ids_are_refused_at_mint() -> None:
    tokens = _tokens()
    for grant in ("has.dot", "x" * 33):
        with pytest.raises(ValueError, match="grant"):
            tokens.mint("call-1", grant=grant)
    tokens.mint("c" * 128, grant="g" * 32)  # the longest of each still fits
    with pytest.raises(ValueError, match="call id"):
        tokens.mint("c" * 129)


def test_the_longest_token_verifies() -> None:
    tokens = _tokens()
    token = tokens.mint("c" * 128, 10**6, grant="g" * 32)
    assert tokens.check(token).ok


def test_an_expired_token_still_names_its_call_and_another_calls_token_is_refused() -> None:
    token = _tokens().mint("call-1")
    late = _tokens(NOW + 500).check(token)
    assert late.problem is TokenProblem.EXPIRED and late.call_id == "call-1" and not late.ok
    other = _tokens().check(token, "call-2")
    assert other.problem is TokenProblem.OTHER_CALL and other.call_id == "call-1"
    assert other.grant is None


def test_the_spent_key_names_call_and_grant() -> None:
    # Stored with the call's events: its spelling must not change between releases.
    assert spent_key("call-1", "g1") == "stream-token:call-1:g1"


def test_problems_read_as_the_close_reasons_carriers_see() -> None:
    assert [p.value for p in TokenProblem] == [
        "missing stream token",
        "malformed stream token",
        "invalid stream token",
        "stream token expired",
        "stream token is for another call",
        "stream token already used",
    ]
