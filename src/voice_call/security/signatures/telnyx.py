"""Telnyx webhook signatures: Ed25519 over `"<telnyx-timestamp>|" + raw body`.

Headers: `telnyx-signature-ed25519` (base64 of the 64-byte signature) and `telnyx-timestamp`
(Unix seconds as a decimal string). The message is the timestamp, a `|`, then the body bytes
exactly as received: never re-serialise the JSON. Like the current Telnyx SDKs we reject a
timestamp more than `tolerance_s` (300 s) away from now in either direction, and check that the
key is 32 bytes and the signature 64 bytes before verifying (docs/carriers.md §2.3).
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
DEFAULT_TOLERANCE_S = 300.0

_CANONICAL_INT = re.compile(r"(0|[1-9][0-9]{0,18})")  # ASCII only: no sign, space or leading 0
_ED25519_SPKI_DER_LEN = 44  # 12-byte SubjectPublicKeyInfo prefix + 32-byte key

PrivateKeyLike = Ed25519PrivateKey | bytes | str
PublicKeyLike = Ed25519PublicKey | bytes | str


def b64decode_loose(text: str | bytes) -> bytes:
    """Standard or URL-safe base64, padding optional; raises ValueError on anything else."""
    raw = text.decode("ascii") if isinstance(text, bytes) else text
    raw = raw.strip().replace("-", "+").replace("_", "/")
    if "=" in raw.rstrip("="):
        raise ValueError("padding inside base64 text")
    raw = raw.rstrip("=")
    raw += "=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from exc


def generate_keypair() -> tuple[Ed25519PrivateKey, str]:
    """A fresh key pair: the private key, and the public key as Telnyx shows it (base64 raw)."""
    private = Ed25519PrivateKey.generate()
    return private, public_key_b64(private)


def public_key_b64(private_key: PrivateKeyLike) -> str:
    raw = (
        load_private_key(private_key)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return base64.b64encode(raw).decode("ascii")


def load_private_key(key: PrivateKeyLike) -> Ed25519PrivateKey:
    """An Ed25519 private key from an object, PEM PKCS#8, or (base64 of) a 32-byte seed or the
    64-byte seed ‖ public form that libsodium and the telnyx-php tests use."""
    if isinstance(key, Ed25519PrivateKey):
        return key
    data = key.encode("ascii") if isinstance(key, str) else key
    if data.lstrip().startswith(b"-----BEGIN"):
        loaded = serialization.load_pem_private_key(data, password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError("PEM key is not an Ed25519 private key")
        return loaded
    raw = data if isinstance(key, bytes) and len(data) in (32, 64) else b64decode_loose(data)
    if len(raw) == 64:
        seed, public = raw[:32], raw[32:]
        private = Ed25519PrivateKey.from_private_bytes(seed)
        if public_key_b64(private) != base64.b64encode(public).decode("ascii"):
            raise ValueError("64-byte key: the second half is not the seed's public key")
        return private
    if len(raw) != 32:
        raise ValueError(f"Ed25519 private key must be 32 or 64 bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_public_key(key: PublicKeyLike) -> Ed25519PublicKey:
    """An Ed25519 public key from an object, PEM SPKI, raw 32 bytes, or base64/base64url of the
    raw 32 bytes or of the DER SubjectPublicKeyInfo. Raises ValueError otherwise."""
    if isinstance(key, Ed25519PublicKey):
        return key
    data = key.encode("ascii") if isinstance(key, str) else key
    if data.lstrip().startswith(b"-----BEGIN"):
        return _ed25519_public(serialization.load_pem_public_key(data))
    raw = data if isinstance(key, bytes) and len(data) == 32 else b64decode_loose(data)
    if len(raw) == 32:
        return Ed25519PublicKey.from_public_bytes(raw)
    if len(raw) == _ED25519_SPKI_DER_LEN:
        return _ed25519_public(serialization.load_der_public_key(raw))
    raise ValueError(f"Ed25519 public key must be 32 raw bytes or DER SPKI, got {len(raw)} bytes")


def _ed25519_public(loaded: object) -> Ed25519PublicKey:
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError("key is not an Ed25519 public key")
    return loaded


def signed_message(timestamp: str, body: bytes) -> bytes:
    return timestamp.encode("utf-8") + b"|" + body


def sign(private_key: PrivateKeyLike, timestamp: str, body: bytes) -> str:
    """The `telnyx-signature-ed25519` header value for `body` sent at `timestamp`."""
    signature = load_private_key(private_key).sign(signed_message(timestamp, body))
    return base64.b64encode(signature).decode("ascii")


def verify(
    public_key: PublicKeyLike,
    signature_header: str | None,
    timestamp_header: str | None,
    body: bytes,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> tuple[bool, str]:
    """(True, "ok") when the headers sign `body` under `public_key` within the time window,
    else (False, why). `now` is Unix seconds, passed in so callers control the clock."""
    if not signature_header:
        return False, "missing signature header"
    if not timestamp_header:
        return False, "missing timestamp header"
    if not _CANONICAL_INT.fullmatch(timestamp_header):
        return False, "malformed timestamp"
    age = now - int(timestamp_header)
    if age > tolerance_s:
        return False, "timestamp too old"
    if -age > tolerance_s:
        return False, "timestamp in the future"
    try:
        key = load_public_key(public_key)
    except ValueError as exc:
        return False, f"invalid public key: {exc}"
    try:
        signature = b64decode_loose(signature_header)
    except (ValueError, UnicodeEncodeError):
        return False, "malformed signature"
    if len(signature) != 64:
        return False, "malformed signature"
    try:
        key.verify(signature, signed_message(timestamp_header, body))
    except InvalidSignature:
        return False, "signature mismatch"
    return True, "ok"
