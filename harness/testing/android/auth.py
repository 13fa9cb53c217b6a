"""Device side of ADB authentication: Android public keys and token signatures.

The host signs a 20-byte token with RSA PKCS#1 v1.5, treating the token as an
already-computed SHA-1 digest. Verification here is plain modular arithmetic so
the device needs no crypto library.
"""

from __future__ import annotations

import base64
import enum
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_SIZE_BYTES = 20
# DER prefix of a SHA-1 DigestInfo (RFC 8017, section 9.2 note 1).
_SHA1_DIGEST_INFO = bytes.fromhex("3021300906052b0e03021a05000414")


class AuthMode(enum.Enum):
    """How the virtual device treats hosts: like a phone with or without 'USB debugging' prompts."""

    NONE = "none"  # no AUTH exchange: CNXN straight away (like ro.adb.secure=0)
    ANY = "any"  # accept any public key the host offers (the user always taps 'Allow')
    KEYS = "keys"  # accept only listed public keys (signatures or offered keys)
    REJECT = "reject"  # never accept: the host stays 'unauthorized'


@dataclass(frozen=True)
class AndroidPublicKey:
    """An RSA public key as adb stores it (``adbkey.pub``): modulus and exponent."""

    modulus: int
    exponent: int
    comment: str = ""

    @property
    def size_bytes(self) -> int:
        return (self.modulus.bit_length() + 7) // 8


def decode_public_key(text: bytes | str) -> AndroidPublicKey:
    """Parse ``base64(struct) [user@host]`` (trailing NUL allowed); raise ValueError when malformed."""
    if isinstance(text, bytes):
        text = text.rstrip(b"\0").decode("ascii", "replace")
    b64, _, comment = text.strip().partition(" ")
    try:
        blob = base64.b64decode(b64, validate=True)
    except ValueError as exc:
        raise ValueError(f"public key is not base64: {exc}") from None
    if len(blob) < 8:
        raise ValueError("public key blob too short")
    (words,) = struct.unpack_from("<I", blob, 0)
    expected = 4 + 4 + 4 * words * 2 + 4
    if words == 0 or len(blob) != expected:
        raise ValueError(f"public key blob is {len(blob)} bytes, expected {expected} for {words} words")
    modulus = int.from_bytes(blob[8 : 8 + 4 * words], "little")
    (exponent,) = struct.unpack_from("<I", blob, 8 + 8 * words)
    return AndroidPublicKey(modulus, exponent, comment.strip())


def verify_token_signature(key: AndroidPublicKey, token: bytes, signature: bytes) -> bool:
    """True when ``signature`` is the PKCS#1 v1.5 SHA-1 signature of ``token`` under ``key``."""
    k = key.size_bytes
    if len(signature) != k or len(token) != TOKEN_SIZE_BYTES:
        return False
    value = int.from_bytes(signature, "big")
    if value >= key.modulus:
        return False
    encoded = pow(value, key.exponent, key.modulus).to_bytes(k, "big")
    digest_info = _SHA1_DIGEST_INFO + token
    padding = b"\xff" * (k - 3 - len(digest_info))
    return encoded == b"\x00\x01" + padding + b"\x00" + digest_info


def new_token() -> bytes:
    """A fresh random token to sign."""
    return os.urandom(TOKEN_SIZE_BYTES)


@dataclass
class KeyPolicy:
    """Which hosts the device lets in; ``accepted`` grows when mode ANY sees a new key."""

    mode: AuthMode = AuthMode.NONE
    accepted: list[AndroidPublicKey] = field(default_factory=list)

    @classmethod
    def from_files(cls, mode: AuthMode, key_files: list[Path]) -> KeyPolicy:
        """Load ``adbkey.pub`` files (one key per file, as adb writes them)."""
        return cls(mode, [decode_public_key(Path(p).read_text()) for p in key_files])

    def signature_ok(self, token: bytes, signature: bytes) -> bool:
        """True when a known key signed the token (never in REJECT mode)."""
        if self.mode is AuthMode.REJECT:
            return False
        return any(verify_token_signature(key, token, signature) for key in self.accepted)

    def offer(self, key_text: bytes) -> bool:
        """The host offered its public key: say whether the 'user' accepts it."""
        try:
            key = decode_public_key(key_text)
        except ValueError:
            return False
        if self.mode is AuthMode.ANY:
            if all(k.modulus != key.modulus for k in self.accepted):
                self.accepted.append(key)
            return True
        if self.mode is AuthMode.KEYS:
            return any(k.modulus == key.modulus and k.exponent == key.exponent for k in self.accepted)
        return False
