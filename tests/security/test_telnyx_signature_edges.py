"""Telnyx keys and base64 at the edges: padding is optional but never inside the text, nothing
outside the alphabet is skipped over, a key of another algorithm or another length is refused
with a reason, and raw bytes are only taken as raw when they are bytes."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from voice_call.security.signatures import telnyx


def test_padding_is_optional_and_extra_padding_is_tolerated() -> None:
    assert telnyx.b64decode_loose("QQ") == b"A"
    assert telnyx.b64decode_loose("QQ==") == b"A"
    assert telnyx.b64decode_loose("QQ===") == b"A"
    assert telnyx.b64decode_loose(b" -_8 ") == base64.b64decode("+/8=")


@pytest.mark.parametrize("text", ["QQ=A", "QQ==QQ=="])
def test_padding_inside_the_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="padding inside base64 text"):
        telnyx.b64decode_loose(text)


@pytest.mark.parametrize("text", ["Q!Q=", "QQ Q", "QQ.Q", "QUJ.D", "QU!JD"])
def test_characters_outside_the_alphabet_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not base64"):
        telnyx.b64decode_loose(text)


def _ec_pem(private: bool) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    if private:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_a_pem_key_of_another_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="not an Ed25519 private key"):
        telnyx.load_private_key(_ec_pem(private=True))
    with pytest.raises(ValueError, match="not an Ed25519 public key"):
        telnyx.load_public_key(_ec_pem(private=False))


def test_a_private_key_is_32_or_64_bytes() -> None:
    private, public = telnyx.generate_keypair()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    both = seed + base64.b64decode(public)
    for form in (seed, both, base64.b64encode(seed).decode(), base64.b64encode(both).decode()):
        assert telnyx.public_key_b64(telnyx.load_private_key(form)) == public
    for size in (16, 24, 48):
        with pytest.raises(ValueError, match="must be 32 or 64 bytes"):
            telnyx.load_private_key(base64.b64encode(os.urandom(size)).decode())


def test_text_is_always_base64_never_raw_bytes() -> None:
    text = base64.b64encode(os.urandom(24)).decode()  # 32 characters, 24 bytes
    assert len(text) == 32
    with pytest.raises(ValueError, match="must be 32 or 64 bytes"):
        telnyx.load_private_key(text)
    with pytest.raises(ValueError, match="32 raw bytes or DER SPKI"):
        telnyx.load_public_key(text)
    _, public = telnyx.generate_keypair()
    loaded = telnyx.load_public_key(base64.b64decode(public))  # bytes: taken as raw
    assert base64.b64encode(loaded.public_bytes_raw()).decode() == public
