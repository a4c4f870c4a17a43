"""Ed25519 signatures over a bundle's MANIFEST.json (which holds every file's sha256).

`cryptography` is imported only when a key is used, so bundles work without it installed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.core.errors import Conflict, FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )


def _require_cryptography() -> None:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise FailedPrecondition(
            "signing bundles needs the `cryptography` package: pip install cryptography"
        ) from None


def generate_keypair(private_path: Path, public_path: Path, *, overwrite: bool = False) -> None:
    """Write a new Ed25519 key pair as PEM: the private key readable by its owner only."""
    for path in (private_path, public_path):
        if path.exists() and not overwrite:
            raise Conflict(f"{path} already exists (pass --overwrite to replace it)")
    _require_cryptography()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path.unlink(missing_ok=True)
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private)
    public_path.write_bytes(public)


def _read_pem(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {what} {path}: {exc.strerror}") from None


def load_private_key(path: Path) -> Ed25519PrivateKey:
    _require_cryptography()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(_read_pem(path, "private key"), password=None)
    except (ValueError, TypeError):
        raise InvalidArgument(
            f"{path} is not an unencrypted PEM private key (create one with `shipyard export keygen`)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidArgument(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    _require_cryptography()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(_read_pem(path, "public key"))
    except (ValueError, TypeError):
        raise InvalidArgument(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidArgument(f"{path} is not an Ed25519 public key")
    return key


def sign(data: bytes, private_key: Path) -> bytes:
    return load_private_key(private_key).sign(data)


def verify(data: bytes, signature: bytes, public_key: Path, *, what: str) -> None:
    """FailedPrecondition unless `signature` is a signature of `data` by `public_key`."""
    key = load_public_key(public_key)
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise FailedPrecondition(
            f"the signature of {what} does not match the public key {public_key.name} "
            "(wrong key, or the manifest was changed after signing)"
        ) from None
