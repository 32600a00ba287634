"""What both stores share: a bundle is checked before it leaves and before it is placed, its files are plain
names, and its key figures travel as annotations."""
from __future__ import annotations

import os
import re
from pathlib import Path

from edgekit.core import bundle as manifest
from edgekit.errors import ManifestError, PublishError

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def safe_files(names) -> None:
    for n in names:
        if not SAFE_NAME.match(n) or n in (".", ".."):
            raise PublishError(f"refusing file name {n!r}: bundle files are plain names inside the bundle")


def verified(bundle: Path) -> dict:
    try:
        m = manifest.read(bundle)
    except ManifestError as e:
        raise PublishError(str(e)) from None
    safe_files(list(m["files"]) + [manifest.MANIFEST])
    extra = {p.name for p in bundle.iterdir()} - set(m["files"]) - {manifest.MANIFEST}
    if extra:
        raise PublishError(f"{bundle} holds files its manifest does not list: {', '.join(sorted(extra))}")
    return m


def annotations(m: dict, manifest_sha: str) -> dict[str, str]:
    v = m.get("validation") or {}
    out = {"org.opencontainers.image.title": m["name"], "org.opencontainers.image.created": m.get("created", ""),
           "vnd.edgekit.variant": m["variant"]["name"], "vnd.edgekit.target": m["target"]["name"],
           "vnd.edgekit.precision": m.get("precision", "int8"), "vnd.edgekit.manifest.sha256": manifest_sha}
    if "top1_agreement" in v:
        out["vnd.edgekit.agreement"] = f"{v['top1_agreement']:.4f}"
        if v.get("top1_agreement_ci95"):
            out["vnd.edgekit.agreement.ci95"] = ",".join(f"{x:.6f}" for x in v["top1_agreement_ci95"])
    if "top1_int8" in v:
        out["vnd.edgekit.top1"] = f"{v['top1_int8']:.4f}"
        if v.get("top1_int8_ci95"):
            out["vnd.edgekit.top1.ci95"] = ",".join(f"{x:.6f}" for x in v["top1_int8_ci95"])
    names = m.get("class_names") or []
    out["vnd.edgekit.classes"] = str(len(names))
    if (m.get("classes") or {}).get("index") == "custom":  # a registry's listing says what the model tells apart
        text = ",".join(names)
        out["vnd.edgekit.class-names"] = text if len(text) <= 1000 else text[:997] + "..."
    return out


def place(staged: Path, to: Path, force: bool) -> Path:
    """Verify a staged bundle against its manifest and rename it into `to`/<name>."""
    try:
        m = manifest.read(staged)
    except ManifestError as e:
        raise PublishError(f"refusing the pulled bundle: {e}") from None
    listed = set(m["files"]) | {manifest.MANIFEST}
    extra = {p.name for p in staged.iterdir()} - listed
    if extra:
        raise PublishError(f"refusing the pulled bundle: files its manifest does not list: {', '.join(sorted(extra))}")
    name = m["name"]
    safe_files([name])
    final = to / name
    if (final / manifest.MANIFEST).is_file() and not force and \
            manifest.file_sha256(final / manifest.MANIFEST) != manifest.file_sha256(staged / manifest.MANIFEST):
        raise PublishError(f"{final} holds a different bundle; pass --force to replace it")
    os.chmod(staged, 0o755)
    manifest.replace_dir(staged, final)
    return final
