"""Publish bundles to a directory or an OCI registry, pull them back verified, list what a destination holds.

Safe and boring: every file is checked against the bundle manifest's sha256 (and, from a registry, against its OCI
blob digest) before anything is placed; places are written to a temporary name and renamed; publishing the same
bundle again is a no-op, a different bundle under an existing name needs force.
"""
from __future__ import annotations

import json
from pathlib import Path

from edgekit.publish import directory


def _is_oci(ref: str) -> bool:
    return ref.startswith("oci://")


def publish(bundle: Path, dest: str, force: bool = False, insecure: bool = False,
            sign_key: Path | None = None) -> str:
    """`sign_key`: a private key (signing.keygen) to sign the bundle manifest's digest with."""
    if _is_oci(dest):
        from edgekit.publish import oci, registry

        with registry.registry_errors():
            return oci.publish(bundle, dest, force, insecure, sign_key)
    return directory.publish(bundle, dest, None, force, sign_key)


def attach(bundle: Path, dest: str, runs: list[dict], insecure: bool = False) -> str:
    """Bench reports of this very build (reports.collect) kept with the bundle already published at `dest`."""
    if _is_oci(dest):
        from edgekit.publish import referrers, registry

        with registry.registry_errors():
            return referrers.attach(bundle, dest, insecure, runs)
    return directory.attach(bundle, dest, None, runs)


def pull(src: str, to: Path, force: bool = False, insecure: bool = False, verify_key: Path | None = None,
         allow_downgrade: bool = False) -> Path:
    """`verify_key`: accept only a bundle signed by this public key, for the name asked for, and no older than the
    last one verified into `to` under that name (unless `allow_downgrade`). A refused pull leaves `to` as it was (a
    directory it had to create is removed again)."""
    if verify_key is not None:  # a key that cannot be one is refused before anything is fetched
        from edgekit.publish import signing

        signing.public_key_id(verify_key)
    made = [p for p in [Path(to), *Path(to).parents] if not p.exists()]
    try:
        if _is_oci(src):
            from edgekit.publish import oci, registry

            with registry.registry_errors():
                return oci.pull(src, to, force, insecure, verify_key, allow_downgrade)
        return directory.pull(directory.root_of(src), to, force, verify_key, allow_downgrade)
    except BaseException:
        for p in made:  # innermost first; only what is still empty
            try:
                p.rmdir()
            except OSError:
                break
        raise


def ls(dest: str, insecure: bool = False) -> list[dict]:
    if _is_oci(dest):
        from edgekit.publish import oci, registry

        with registry.registry_errors():
            return oci.ls(dest, insecure)
    return directory.ls(dest)


def to_json(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2)
