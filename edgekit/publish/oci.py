"""An OCI registry store (through `oras`): a bundle is an artifact whose layers are its files, tagged by name.

Every blob is checked against its digest and the bundle manifest against the digest it was published with; blobs
uploaded by an interrupted publish are unreferenced, so the tag still names what it named before."""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from edgekit.core import bundle as manifest
from edgekit.errors import PublishError
from edgekit.publish import referrers, registry, signing
from edgekit.publish import reports as bench
from edgekit.publish.bundles import annotations, place, safe_files, verified

ARTIFACT_TYPE = "application/vnd.edgekit.bundle.v1"
MEDIA_TYPES = {".xml": "application/vnd.edgekit.openvino.xml", ".bin": "application/vnd.edgekit.openvino.bin",
               ".onnx": "application/vnd.edgekit.onnx", ".tflite": "application/vnd.edgekit.tflite",
               ".npz": "application/vnd.edgekit.golden.npz", ".json": "application/vnd.edgekit.manifest.v1+json",
               ".txt": "text/plain", ".md": "text/markdown"}
SIGNATURE = "vnd.edgekit.signature"  # Ed25519 over the signed statement (publish/signing.py), base64
SIGNATURE_KEY = "vnd.edgekit.signature.key-id"
SIGNATURE_ALG = "vnd.edgekit.signature.algorithm"
SIGNATURE_STATEMENT = "vnd.edgekit.signature.statement"  # what the signature vouches for (signing.statement), JSON


def publish(bundle: Path, dest: str, force: bool, insecure: bool, sign_key: Path | None = None) -> str:
    m = verified(bundle)
    ref = registry.parse_oci(dest)
    tag = ref.tag or m["name"]
    target = ref.at(tag)
    client = registry.client_for(ref, insecure)
    ours = manifest.file_sha256(bundle / manifest.MANIFEST)
    notes = annotations(m, ours)
    if sign_key:  # signed for the repository and tag it is published under: a pull of any other is refused
        sig = signing.sign(sign_key, signing.statement(m, ours, f"{ref.repo}:{tag}"))
        notes.update({SIGNATURE: sig["signature"], SIGNATURE_KEY: sig["key_id"], SIGNATURE_ALG: sig["algorithm"],
                      SIGNATURE_STATEMENT: json.dumps(sig["statement"], sort_keys=True)})
    existing = registry.get_manifest(client, target)
    resigned = None
    if existing is not None:
        have = existing.get("annotations") or {}
        if have.get("vnd.edgekit.manifest.sha256") == ours:
            if not sign_key or have.get(SIGNATURE) == notes[SIGNATURE]:
                return f"oci://{target} already holds this bundle: nothing to do"
            force = True  # the same bundle, signed now: only the OCI manifest changes
            resigned = registry.raw(client, ref, tag)  # its reports must follow it to the new manifest
        if not force:
            raise PublishError(f"oci://{target} holds a different bundle; pass --force to replace the tag")
    container = client.get_container(target)
    layers = []
    for f in sorted(list(m["files"]) + [manifest.MANIFEST]):
        p = bundle / f
        layer = {"mediaType": MEDIA_TYPES.get(p.suffix, "application/octet-stream"),
                 "digest": "sha256:" + manifest.file_sha256(p), "size": p.stat().st_size,
                 "annotations": {registry.TITLE: f}}
        with registry.quiet():
            if not client.blob_exists(layer, container):
                registry.check(client.upload_blob(str(p), container, layer), f"blob {f}")
        layers.append(layer)
    config = registry.empty_config(client, container)
    oci_manifest = {"schemaVersion": 2, "mediaType": registry.IMAGE_MANIFEST,
                    "artifactType": ARTIFACT_TYPE, "config": config, "layers": layers,
                    "annotations": notes}
    # the tag moves only now, in one request: an interrupted publish leaves it where it was
    with registry.quiet():
        registry.check(client.upload_manifest(oci_manifest, container), "the manifest")
    signed = f" (signed by key {notes[SIGNATURE_KEY]})" if sign_key else ""
    kept = referrers.follow(client, ref, resigned[0], registry.raw(client, ref, tag)[0]) if resigned else 0
    return f"published {m['name']} to oci://{target}{signed}" + (f"; its {kept} bench report(s) kept" if kept else "")


def pull(src: str, to: Path, force: bool, insecure: bool, verify_key: Path | None = None,
         allow_downgrade: bool = False) -> Path:
    ref = registry.parse_oci(src)
    if not ref.tag:
        raise PublishError(f"{src!r}: name a tag (oci://HOST/REPO:TAG); edgekit ls lists them")
    client = registry.client_for(ref, insecure)
    target = ref.at(ref.tag)
    raw = registry.raw(client, ref, ref.tag)
    if raw is None:
        raise PublishError(f"oci://{target} does not exist")
    om = raw[1]
    if om.get("artifactType") != ARTIFACT_TYPE:
        raise PublishError(f"oci://{target} is not an edgekit bundle (artifact type {om.get('artifactType')})")
    titles = [(layer.get("annotations") or {}).get(registry.TITLE, "") for layer in om.get("layers", [])]
    safe_files(titles)
    if len(set(titles)) != len(titles):
        raise PublishError(f"oci://{target} names a file twice")
    container = client.get_container(target)
    to.mkdir(parents=True, exist_ok=True)
    manifest.sweep(to)  # what a killed pull left
    tmp = Path(tempfile.mkdtemp(prefix=manifest.temp_prefix(), dir=to))
    try:
        for layer, title in zip(om["layers"], titles):
            h = hashlib.sha256()
            with registry.quiet():
                resp = client.get_blob(container, layer["digest"], stream=True)
            registry.check(resp, f"blob {title}")
            with open(tmp / title, "wb") as f:
                for chunk in resp.iter_content(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
            if "sha256:" + h.hexdigest() != layer["digest"]:
                raise PublishError(f"refusing oci://{target}: {title} does not match its digest (tampered or "
                                   "truncated in the registry)")
        notes = om.get("annotations") or {}
        want = notes.get("vnd.edgekit.manifest.sha256")
        got = manifest.file_sha256(tmp / manifest.MANIFEST)
        if want and got != want:
            raise PublishError(f"refusing oci://{target}: its bundle manifest does not match the digest it was "
                               "published with")
        st = None
        if verify_key:  # signed for the tag asked for, and not older than what was verified here before
            sig = {"signature": notes.get(SIGNATURE), "key_id": notes.get(SIGNATURE_KEY),
                   "algorithm": notes.get(SIGNATURE_ALG), "statement": _statement(notes)} \
                if notes.get(SIGNATURE) else None
            st = signing.verify(verify_key, got, sig, f"oci://{target}", f"{ref.repo}:{ref.tag}")
            signing.check_not_older(to, st, f"oci://{target}", allow_downgrade)
        runs = referrers.pull_reports(client, ref, container, registry.digest(raw[0]), got, f"oci://{target}")
        with signing.guarded(to, st, f"oci://{target}", allow_downgrade):  # checked again, placed, recorded: one lock
            placed = place(tmp, to, force)
            bench.place(runs, placed)
        return placed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _statement(notes: dict) -> dict | None:
    try:
        st = json.loads(notes.get(SIGNATURE_STATEMENT) or "null")
    except ValueError:
        return None
    return st if isinstance(st, dict) else None


def ls(dest: str, insecure: bool) -> list[dict]:
    ref = registry.parse_oci(dest)
    client = registry.client_for(ref, insecure)
    try:
        with registry.quiet():
            tags = client.get_tags(client.get_container(f"{ref.host}/{ref.repo}"))
    except ValueError as e:
        if registry.not_found(e):
            return []
        raise PublishError(f"registry error listing {dest}: {str(e).splitlines()[0]}") from None
    out = []
    for tag in tags or []:
        got = registry.raw(client, ref, tag)
        if got and got[1].get("artifactType") == ARTIFACT_TYPE:
            measured = [{k[len(referrers.BENCH):]: v for k, v in (d.get("annotations") or {}).items() if k.startswith(referrers.BENCH)}
                        for d in referrers.reports_of(client, ref, registry.digest(got[0]))]
            out.append({"name": tag, **(got[1].get("annotations") or {}), "bench": bench.per_device(measured)})
    return out
