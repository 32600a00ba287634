"""Signatures for origin: a checksum proves a bundle intact, a signature says who published what.

Ed25519 (through `cryptography`) over a statement that names what it vouches for: the name the bundle is published
under, its variant and target, the bundle manifest's sha256 (the manifest lists the sha256 of every other file, so
the signature covers the whole bundle), when it was built and by which edgekit. `edgekit keygen` makes a key pair;
`publish --sign KEY` stores signature and statement beside the bundle (directory store) or in the artifact's
annotations (registry); `pull --verify-key PUB` refuses, before anything is placed, an unsigned bundle, another
signer's, an altered manifest, a signed bundle served under another name than it was signed for, and (remembered per
name in the pull's target directory) a signed build older than one verified there before, unless --allow-downgrade.
A signature of edgekit before statements (over the digest alone) says nothing of the name: it is refused, clearly."""
from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import os
from collections.abc import Iterator
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


STATEMENT = "edgekit-bundle-statement"
STATEMENT_VERSION = 1
MAX_KEY_BYTES = 64 << 10  # a PEM key is a few hundred bytes: anything larger (/dev/zero) is not one
PULLED = ".edgekit-signed-pulls.json"  # per pull target: the newest verified build of each name


def statement(m: dict, manifest_sha256: str, name: str) -> dict:
    """What a signature vouches for: bundle `m` (its manifest digest) published under `name`."""
    return {"type": STATEMENT, "version": STATEMENT_VERSION, "name": name, "bundle": m["name"],
            "variant": (m.get("variant") or {}).get("name"), "target": (m.get("target") or {}).get("name"),
            "manifest_sha256": manifest_sha256, "created": m.get("created"),
            "edgekit_version": (m.get("edgekit") or {}).get("version")}


def message(st: dict) -> bytes:
    return b"edgekit bundle statement\n" + json.dumps(st, sort_keys=True, separators=(",", ":")).encode()


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
        tmp.unlink(missing_ok=True)  # a leftover (or planted) file or symlink is not written through
        try:  # created here, exclusively, with its mode from the start: never a file someone else opened
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
        except OSError as e:
            raise PublishError(f"cannot create {tmp}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, p)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return path, pub


def _load(path: Path, private: bool):
    import stat
    import warnings

    serialization, ed25519 = _crypto()
    try:  # non-blocking: a FIFO or device in the key's place is refused, never waited on
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise PublishError(f"{path} is not a key file (not a regular file); edgekit keygen makes a key pair")
            data = f.read(MAX_KEY_BYTES + 1)
    except OSError as e:
        raise PublishError(f"cannot read key {path}: {e.strerror}") from None
    if len(data) > MAX_KEY_BYTES:
        raise PublishError(f"{path} is not a key ({len(data)} bytes or more; a PEM key is a few hundred)")
    if private and st.st_mode & 0o077:
        warnings.warn(f"signing key {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}): "
                      f"chmod 600 {path}", stacklevel=3)
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


def sign(private_key: Path, st: dict) -> dict:
    """The signature of statement `st` (statement()), with the statement itself and the signer's key id."""
    key = _load(private_key, private=True)
    sig = key.sign(message(st))
    return {"algorithm": ALGORITHM, "key_id": key_id(key.public_key()),
            "signature": base64.b64encode(sig).decode(), "statement": st}


def verify(public_key: Path, manifest_sha256: str, signature: dict | None, what: str, name: str) -> dict:
    """Raise PublishError unless `signature` is `public_key`'s over a statement for this manifest digest published
    as `name`; returns the statement."""
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
    st = signature.get("statement")
    if not isinstance(st, dict) or st.get("type") != STATEMENT:
        raise PublishError(f"refusing {what}: its signature (an older edgekit's, over the manifest digest alone) does "
                           "not say which bundle it vouches for; publish it again with --sign")
    try:
        key.verify(base64.b64decode(signature["signature"]), message(st))
    except (InvalidSignature, ValueError, TypeError):
        raise PublishError(f"refusing {what}: its signature does not match what it says it signed (altered after "
                           "signing)") from None
    if st.get("manifest_sha256") != manifest_sha256:
        raise PublishError(f"refusing {what}: its signature does not match its manifest (it vouches for another build "
                           f"of {st.get('name')}, manifest {str(st.get('manifest_sha256'))[:12]}: altered after "
                           "signing)")
    if st.get("name") != name:
        raise PublishError(f"refusing {what}: it is signed as {st.get('name')!r}, not as {name!r} (a signed bundle "
                           "served under another name)")
    return st


def _when(st: dict) -> datetime.datetime:
    try:
        t = datetime.datetime.fromisoformat(str(st.get("created")))
    except ValueError:
        return datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    return t if t.tzinfo else t.replace(tzinfo=datetime.timezone.utc)


def check_not_older(to: Path, st: dict, what: str, allow_downgrade: bool) -> None:
    """Refuse a signed build older than the newest one verified into `to` under the same name."""
    seen = _pulled(to).get(st["name"])
    if allow_downgrade or not seen or seen.get("manifest_sha256") == st["manifest_sha256"]:
        return
    if _when(st) < _when(seen):
        raise PublishError(f"refusing {what}: its signed build (created {st.get('created')}) is older than the one "
                           f"verified into {to} before (created {seen.get('created')}); pass --allow-downgrade to "
                           "go back")


def remember(to: Path, st: dict) -> None:
    """The newest verified build of each name in `to`, for check_not_older."""
    from edgekit.core.bundle import write_json

    pulled = _pulled(to)
    seen = pulled.get(st["name"])
    if not seen or _when(st) >= _when(seen):
        pulled[st["name"]] = {k: st.get(k) for k in ("created", "manifest_sha256", "variant", "target")}
        write_json(to / PULLED, pulled)


@contextlib.contextmanager
def guarded(to: Path, st: dict | None, what: str, allow_downgrade: bool) -> Iterator[None]:
    """Around placing a verified pull into `to`: under one lock on `to`'s record, check again that the build is not
    older than the newest verified there, let the caller place it, then record it. Two pulls into one directory can
    then not both pass the check and leave the older build in place. Nothing to guard for an unsigned pull."""
    if st is None:
        yield
        return
    to.mkdir(parents=True, exist_ok=True)
    with _locked(to, f"another signed pull into {to}"):
        check_not_older(to, st, what, allow_downgrade)
        yield
        remember(to, st)


@contextlib.contextmanager
def _locked(directory: Path, holder: str) -> Iterator[None]:
    """An exclusive advisory lock on the directory itself (no lock file: a refused pull leaves `to` as it was)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks; pulls into one directory must not run at once
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            import sys

            print(f"waiting for {holder} to finish", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _pulled(to: Path) -> dict:
    """The record of signed pulls into `to`; {} only when there is none yet. A record that cannot be read or is not
    one is refused (fail closed): silently starting afresh would let an older signed build back in."""
    path = to / PULLED
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise PublishError(f"cannot read {path} ({e.strerror}): it records the newest signed build of each bundle "
                           "pulled here, which rollback protection needs; make it readable") from None
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(isinstance(v, dict) and isinstance(v.get("manifest_sha256"), str)
                                             for v in data.values()):
        raise PublishError(f"{path} is damaged: it records the newest signed build of each bundle pulled here, which "
                           "rollback protection needs (--allow-downgrade does not pass it); restore it, or delete it "
                           "to accept the next signed pull of each bundle as the newest")
    return data
