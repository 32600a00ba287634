"""Signatures for origin: a checksum proves a bundle intact, a signature says who published it.

Ed25519 (through `cryptography`) over one message, the bundle manifest's sha256: the manifest lists the sha256 of
every other file, so the signature covers the whole bundle. `edgekit keygen` makes a key pair; `publish --sign KEY`
stores the signature beside the bundle (directory store) or in the artifact's annotations (registry);
`pull --verify-key PUB` refuses unsigned bundles, other signers and altered manifests before anything is placed."""
from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from edgekit.errors import PublishError

ALGORITHM = "ed25519"


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise PublishError("signing and verifying bundles needs the cryptography package: "
                           "in an edgekit checkout, pip install '.[publish]'") from None
    return serialization, ed25519


def message(manifest_sha256: str) -> bytes:
    return f"edgekit bundle manifest sha256:{manifest_sha256}".encode()


def _raw_public(public_key) -> bytes:
    serialization, _ = _crypto()
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key) -> str:
    return hashlib.sha256(_raw_public(public_key)).hexdigest()[:16]


def keygen(path: Path, force: bool = False) -> tuple[Path, Path]:
    """A new key pair: the private key at `path` (PEM, readable by its owner only), the public one at PATH.pub."""
    serialization, ed25519 = _crypto()
    path = Path(path)
    pub = path.with_name(path.name + ".pub")
    for p in (path, pub):
        if p.exists() and not force:
            raise PublishError(f"{p} exists; pass --force to replace it (a replaced key cannot sign for the old one)")
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path.parent.mkdir(parents=True, exist_ok=True)
    for p, data, mode in ((path, private, 0o600), (pub, public, 0o644)):
        tmp = p.with_name(f".tmp-{p.name}-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    return path, pub


def _load(path: Path, private: bool):
    serialization, ed25519 = _crypto()
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise PublishError(f"cannot read key {path}: {e.strerror}") from None
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as e:
        raise PublishError(f"{path} is not a PEM {'private' if private else 'public'} key "
                           f"({str(e).splitlines()[0]}); edgekit keygen makes a key pair") from None
    wanted = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, wanted):
        raise PublishError(f"{path} is not an Ed25519 key; edgekit keygen makes one")
    return key


def public_key_id(public_key: Path) -> str:
    """The id `edgekit ls` shows as a bundle's signer, of a KEY.pub."""
    return key_id(_load(public_key, private=False))


def sign(private_key: Path, manifest_sha256: str) -> dict:
    key = _load(private_key, private=True)
    sig = key.sign(message(manifest_sha256))
    return {"algorithm": ALGORITHM, "key_id": key_id(key.public_key()),
            "signature": base64.b64encode(sig).decode()}


def verify(public_key: Path, manifest_sha256: str, signature: dict | None, what: str) -> str:
    """Raise PublishError unless `signature` is `public_key`'s over this manifest digest; returns the key id."""
    from cryptography.exceptions import InvalidSignature

    key = _load(public_key, private=False)
    kid = key_id(key)
    if not signature or not signature.get("signature"):
        raise PublishError(f"refusing {what}: it is not signed, and --verify-key asks for a bundle signed by key "
                           f"{kid}")
    if signature.get("algorithm") != ALGORITHM:
        raise PublishError(f"refusing {what}: signed with {signature.get('algorithm')!r}, not {ALGORITHM}")
    if signature.get("key_id") != kid:
        raise PublishError(f"refusing {what}: signed by key {signature.get('key_id')}, not by {kid} ({public_key})")
    try:
        key.verify(base64.b64decode(signature["signature"]), message(manifest_sha256))
    except (InvalidSignature, ValueError):
        raise PublishError(f"refusing {what}: its signature does not match its manifest (altered after signing)") \
            from None
    return kid
