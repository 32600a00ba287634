"""A directory store: one bundle directory per name, written to a temporary name and renamed, and beside it a
record `<name>.edgekit.json` of the manifest's sha256 (and its signature, `publish --sign`). The record is what a
pull checks the manifest against: inside the bundle, the manifest would vouch for itself."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urlparse

from edgekit.core import bundle as manifest
from edgekit.errors import ManifestError, PublishError
from edgekit.publish import reports as bench
from edgekit.publish import signing
from edgekit.publish.bundles import annotations, place, safe_files, verified

RECORD = ".edgekit.json"  # DEST/<name>.edgekit.json


def root_of(dest: str) -> Path:
    return Path(urlparse(dest).path) if dest.startswith("file://") else Path(dest)


def record_of(bundle_dir: Path) -> Path:
    return bundle_dir.with_name(bundle_dir.name + RECORD)


def read_record(bundle_dir: Path) -> dict | None:
    path = record_of(bundle_dir)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        raise PublishError(f"{path} is not a readable publish record; republish the bundle") from None
    sig = record.get("signature") if isinstance(record, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("manifest_sha256"), str) \
            or (sig is not None and not (isinstance(sig, dict) and all(isinstance(sig.get(k), str)
                                                                        for k in ("algorithm", "key_id", "signature")))):
        raise PublishError(f"{path} is not a publish record edgekit wrote (its fields are missing or of the wrong "
                           "kind); republish the bundle")
    return record


def publish(bundle: Path, dest: str, name: str | None, force: bool, sign_key: Path | None = None) -> str:
    m = verified(bundle)
    name = name or m["name"]
    safe_files([name])
    root = root_of(dest)
    if root.exists() and not root.is_dir():
        raise PublishError(f"--to {dest}: {root} is a file; a directory store is a directory (or pass oci://...)")
    final = root / name
    ours = manifest.file_sha256(bundle / manifest.MANIFEST)
    record = {"name": name, "manifest_sha256": ours}
    if sign_key:
        record["signature"] = signing.sign(sign_key, signing.statement(m, ours, name))
    same_build = False
    if (final / manifest.MANIFEST).is_file():
        if manifest.file_sha256(final / manifest.MANIFEST) == ours:
            old = read_record(final) or {}
            same_build = old.get("manifest_sha256") == ours
            if same_build and old.get("reports"):
                record["reports"] = old["reports"]  # the same build: its measurements still hold
            try:
                manifest.read(final)
                if same_build and (not sign_key or old.get("signature") == record["signature"]):
                    return f"{final} already holds this bundle: nothing to do"
                manifest.write_json(record_of(final), record)  # same bundle, record added or signed now
                return f"published {name} to {final} (bundle already there; record{' and signature' * bool(sign_key)}" \
                       " written)"
            except ManifestError:
                pass  # damaged copy of the same bundle: replace it
        elif not force:
            raise PublishError(f"{final} holds a different bundle; pass --force to replace it")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        for f in list(m["files"]) + [manifest.MANIFEST]:
            shutil.copyfile(bundle / f, tmp / f)
        manifest.read(tmp)
        os.chmod(tmp, 0o755)
        # the bundle first, then its record: a publish cut in between leaves a record that does not match, which a
        # pull refuses, never a bundle a pull would take for the old one
        manifest.replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest.write_json(record_of(final), record)
    if not same_build:
        shutil.rmtree(bench.dir_of(final), ignore_errors=True)  # reports of the build this one replaced
    return f"published {name} to {final}" + (f" (signed by key {record['signature']['key_id']})" if sign_key else "")


def attach(bundle: Path, dest: str, name: str | None, runs: list[dict]) -> str:
    """Bench reports kept beside the published bundle in DEST/<name>.bench/, each listed (digest and summary) in the
    publish record; the bundle itself is not copied again. Only to the build that was measured."""
    m = verified(bundle)
    name = name or m["name"]
    final = root_of(dest) / name
    record = read_record(final)
    if record is None or record.get("manifest_sha256") != manifest.file_sha256(bundle / manifest.MANIFEST):
        raise PublishError(f"{final} does not hold this build of {name}: publish the bundle there first")
    listed = {e["file"] for e in _entries(record, final)}
    folder = bench.dir_of(final)
    added = []
    for run in runs:
        data = bench.encode(run)
        fname = bench.file_name(data)
        if fname in listed:
            continue
        manifest.write_atomic(folder / fname, data)
        record.setdefault("reports", []).append({"file": fname, "sha256": hashlib.sha256(data).hexdigest(),
                                                 "summary": bench.summary(run)})
        added.append(fname)
    if not added:
        return f"{final} already holds these bench reports: nothing to attach"
    manifest.write_json(record_of(final), record)  # the record last: a report it lists is always there
    return f"attached {len(added)} bench report(s) to {final} (in {folder})"


def pull(src: Path, to: Path, force: bool, verify_key: Path | None = None, allow_downgrade: bool = False) -> Path:
    if not (src / manifest.MANIFEST).is_file():
        hint = ""
        if ":" in src.name and (src.parent / src.name.split(":")[0]).is_dir():  # the registry's STORE:NAME form
            hint = f"; a directory store names the bundle's directory: {src.parent / src.name.replace(':', '/', 1)}"
        raise PublishError(f"{src} is not a published bundle (no {manifest.MANIFEST}){hint}")
    record = read_record(src)
    if record is None:
        raise PublishError(f"{src} has no publish record ({record_of(src).name}): it was not published by "
                           "`edgekit publish` (or by an older edgekit); publish it again")
    files = [p.name for p in src.iterdir() if p.is_file()]
    safe_files(files)
    to.mkdir(parents=True, exist_ok=True)
    manifest.sweep(to)  # what a killed pull left
    tmp = Path(tempfile.mkdtemp(prefix=manifest.temp_prefix(), dir=to))
    try:
        for f in files:
            shutil.copyfile(src / f, tmp / f)
        got = manifest.file_sha256(tmp / manifest.MANIFEST)
        if got != record.get("manifest_sha256"):
            raise PublishError(f"refusing {src}: its manifest does not match the digest recorded when it was "
                               "published (altered in the store)")
        st = None
        if verify_key:  # signed for the name asked for (the store's directory), and not older than before
            st = signing.verify(verify_key, got, record.get("signature"), str(src), src.name)
            signing.check_not_older(to, st, str(src), allow_downgrade)
        runs = {}
        for e in _entries(record, src):
            try:
                data = (bench.dir_of(src) / e["file"]).read_bytes()
            except OSError:
                warnings.warn(f"{src}: bench report {e['file']} is listed but missing from the store; skipped")
                continue
            bench.check(e["file"], data, e["sha256"], got, str(src))
            runs[e["file"]] = data
        with signing.guarded(to, st, str(src), allow_downgrade):  # checked again, placed, recorded: one lock
            placed = place(tmp, to, force)
            bench.place(runs, placed)
        return placed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _entries(record: dict, where: Path) -> list[dict]:
    """The record's report entries; one that is not {file, sha256} with a plain file name is refused."""
    out = record.get("reports", [])
    if not isinstance(out, list) or not all(isinstance(e, dict) and isinstance(e.get("file"), str)
                                            and isinstance(e.get("sha256"), str) for e in out):
        raise PublishError(f"{record_of(where)} lists bench reports it cannot describe; publish the bundle again")
    safe_files([e["file"] for e in out])
    return out


def ls(dest: str) -> list[dict]:
    root = root_of(dest)
    if not root.is_dir():
        raise PublishError(f"{root} is not a directory")
    out = []
    for d in sorted(root.iterdir()):
        if (d / manifest.MANIFEST).is_file() and not d.name.startswith("."):
            digest = manifest.file_sha256(d / manifest.MANIFEST)
            try:
                record = read_record(d) or {}
                m = manifest.read(d, verify=False)
            except (ManifestError, PublishError) as e:  # one bad entry: said in its row, the listing goes on
                out.append({"name": d.name, "verified": "false", "problem": str(e)})
                continue
            row = {"name": d.name, **annotations(m, digest)}
            # the figures shown come from this manifest: said to be the published one only if it is
            row["verified"] = "true" if record.get("manifest_sha256") == digest else "false"
            if record.get("signature"):
                row["vnd.edgekit.signature.key-id"] = record["signature"]["key_id"]
            row["bench"] = bench.per_device([e["summary"] for e in _entries(record, d)
                                             if isinstance(e.get("summary"), dict)])
            out.append(row)
    return out
