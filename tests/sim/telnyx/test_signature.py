"""Telnyx Ed25519 webhook signatures: docs/carriers.md §5.3 vectors, key formats, properties."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from tests.sim.telnyx.app import TEST_PUBLIC_KEY, TEST_SECRET_KEY
from voice_call.security.signatures import telnyx as sig

# X4: derived here with the X1 key (Ed25519 is deterministic).
X4_TIMESTAMP = "1700000000"
X4_BODY = b'{"data":{"event_type":"message.received","id":"test-123"}}'
X4_SIGNATURE = (
    "tMXRZyBL2gkwrgKp6CTDXTO/K+DVq0ZKEFB3tSdfBwqZGC3K/Hr7TCW+jY7RdWrAiKXEckI3tsHEpdz7lS/MDA=="
)
NOW = 1700000000.0


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_x1_seed_derives_the_published_public_key() -> None:
    secret = base64.b64decode(TEST_SECRET_KEY)
    seed, public = secret[:32], secret[32:]
    derived = raw_public(Ed25519PrivateKey.from_private_bytes(seed).public_key())
    assert derived == public == base64.b64decode(TEST_PUBLIC_KEY)
    assert sig.public_key_b64(TEST_SECRET_KEY) == TEST_PUBLIC_KEY
    assert sig.public_key_b64(base64.b64encode(seed).decode()) == TEST_PUBLIC_KEY


@pytest.mark.parametrize(
    ("secret", "public", "message", "signature"),
    [
        (  # RFC 8032 §7.1 TEST 1
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bac"
            "c61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (  # RFC 8032 §7.1 TEST 2
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e"
            "458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ],
)
def test_x2_x3_rfc8032_vectors(secret: str, public: str, message: str, signature: str) -> None:
    private = sig.load_private_key(bytes.fromhex(secret))
    assert raw_public(private.public_key()).hex() == public
    assert private.sign(bytes.fromhex(message)).hex() == signature
    sig.load_public_key(bytes.fromhex(public)).verify(
        bytes.fromhex(signature), bytes.fromhex(message)
    )


def test_x4_vector_signs_and_verifies() -> None:
    assert sig.sign(TEST_SECRET_KEY, X4_TIMESTAMP, X4_BODY) == X4_SIGNATURE
    assert sig.verify(TEST_PUBLIC_KEY, X4_SIGNATURE, X4_TIMESTAMP, X4_BODY, now=NOW) == (
        True,
        "ok",
    )
    # The oracle: cryptography directly, message = timestamp | body.
    Ed25519PublicKey.from_public_bytes(base64.b64decode(TEST_PUBLIC_KEY)).verify(
        base64.b64decode(X4_SIGNATURE), X4_TIMESTAMP.encode() + b"|" + X4_BODY
    )


@pytest.mark.parametrize(
    ("timestamp", "body"),
    [
        (X4_TIMESTAMP, X4_BODY.replace(b"test-123", b"test-124")),  # tampered body
        ("1700000001", X4_BODY),  # tampered timestamp
        (X4_TIMESTAMP, X4_BODY + b" "),  # trailing byte
        (X4_TIMESTAMP, b'{"data": {"event_type": "message.received", "id": "test-123"}}'),
    ],
)
def test_x4_tampering_fails(timestamp: str, body: bytes) -> None:
    assert sig.verify(TEST_PUBLIC_KEY, X4_SIGNATURE, timestamp, body, now=NOW) == (
        False,
        "signature mismatch",
    )


def test_x4_message_without_separator_does_not_verify() -> None:
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(TEST_PUBLIC_KEY))
    with pytest.raises(InvalidSignature):
        public.verify(base64.b64decode(X4_SIGNATURE), X4_TIMESTAMP.encode() + X4_BODY)


@pytest.mark.parametrize(
    ("now", "reason"),
    [
        (NOW + 300, "ok"),
        (NOW - 300, "ok"),
        (NOW + 301, "timestamp too old"),
        (NOW - 301, "timestamp in the future"),
    ],
)
def test_tolerance_window_both_directions(now: float, reason: str) -> None:
    ok, why = sig.verify(TEST_PUBLIC_KEY, X4_SIGNATURE, X4_TIMESTAMP, X4_BODY, now=now)
    assert (ok, why) == (reason == "ok", reason)


@pytest.mark.parametrize(
    ("signature", "timestamp", "reason"),
    [
        (None, X4_TIMESTAMP, "missing signature header"),
        (X4_SIGNATURE, None, "missing timestamp header"),
        (X4_SIGNATURE, "+1700000000", "malformed timestamp"),
        (X4_SIGNATURE, "01700000000", "malformed timestamp"),
        (X4_SIGNATURE, " 1700000000", "malformed timestamp"),
        (X4_SIGNATURE, "1700000000.0", "malformed timestamp"),
        (X4_SIGNATURE, "١٧٠٠٠٠٠٠٠٠", "malformed timestamp"),  # non-ASCII digits
        ("not base64!", X4_TIMESTAMP, "malformed signature"),
        (base64.b64encode(b"x" * 63).decode(), X4_TIMESTAMP, "malformed signature"),
        ("QUJD=RA==", X4_TIMESTAMP, "malformed signature"),
    ],
)
def test_malformed_headers(signature: str | None, timestamp: str | None, reason: str) -> None:
    assert sig.verify(TEST_PUBLIC_KEY, signature, timestamp, X4_BODY, now=NOW) == (False, reason)


def test_signature_as_base64url_without_padding() -> None:
    url_safe = base64.urlsafe_b64encode(base64.b64decode(X4_SIGNATURE)).decode().rstrip("=")
    assert sig.verify(TEST_PUBLIC_KEY, url_safe, X4_TIMESTAMP, X4_BODY, now=NOW)[0]


def public_key_forms() -> list[object]:
    key = sig.load_public_key(TEST_PUBLIC_KEY)
    raw = raw_public(key)
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return [
        key,
        raw,
        TEST_PUBLIC_KEY,
        TEST_PUBLIC_KEY.rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        base64.b64encode(der).decode(),
        base64.urlsafe_b64encode(der).decode(),
        pem,
        pem.decode(),
    ]


@pytest.mark.parametrize("public_key", public_key_forms())
def test_public_key_formats(public_key: sig.PublicKeyLike) -> None:
    assert sig.verify(public_key, X4_SIGNATURE, X4_TIMESTAMP, X4_BODY, now=NOW) == (True, "ok")


@pytest.mark.parametrize(
    "public_key",
    ["", "abc", base64.b64encode(b"k" * 31).decode(), base64.b64encode(b"k" * 33).decode()],
)
def test_bad_public_keys_are_reported(public_key: str) -> None:
    ok, reason = sig.verify(public_key, X4_SIGNATURE, X4_TIMESTAMP, X4_BODY, now=NOW)
    assert not ok
    assert reason.startswith("invalid public key")


def test_other_key_does_not_verify() -> None:
    _, other_public = sig.generate_keypair()
    assert sig.verify(other_public, X4_SIGNATURE, X4_TIMESTAMP, X4_BODY, now=NOW) == (
        False,
        "signature mismatch",
    )


def test_private_key_formats_sign_alike() -> None:
    seed = base64.b64decode(TEST_SECRET_KEY)[:32]
    private = Ed25519PrivateKey.from_private_bytes(seed)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for form in (private, seed, base64.b64encode(seed).decode(), TEST_SECRET_KEY, pem):
        assert sig.sign(form, X4_TIMESTAMP, X4_BODY) == X4_SIGNATURE
    mismatched = base64.b64encode(seed + b"\0" * 32).decode()
    with pytest.raises(ValueError, match="second half"):
        sig.load_private_key(mismatched)


KEY, PUBLIC = sig.generate_keypair()


@given(body=st.binary(max_size=512), timestamp=st.integers(min_value=0, max_value=2**40))
def test_property_sign_verify_round_trip(body: bytes, timestamp: int) -> None:
    signature = sig.sign(KEY, str(timestamp), body)
    assert sig.verify(PUBLIC, signature, str(timestamp), body, now=float(timestamp)) == (True, "ok")


@given(
    body=st.binary(min_size=1, max_size=256),
    timestamp=st.integers(min_value=0, max_value=2**40),
    where=st.sampled_from(["body", "timestamp", "signature"]),
    position=st.integers(min_value=0),
)
def test_property_any_single_bit_change_fails(
    body: bytes, timestamp: int, where: str, position: int
) -> None:
    ts = str(timestamp)
    signature = sig.sign(KEY, ts, body)
    if where == "body":
        body = flip(body, position)
    elif where == "timestamp":
        ts = flip(ts.encode(), position).decode("latin-1")
    else:
        signature = base64.b64encode(flip(base64.b64decode(signature), position)).decode()
    ok, _ = sig.verify(PUBLIC, signature, ts, body, now=float(timestamp))
    assert not ok


def flip(data: bytes, position: int) -> bytes:
    bit = position % (len(data) * 8)
    changed = bytearray(data)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)
