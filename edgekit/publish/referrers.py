"""Bench reports in a registry, as artifacts that refer to a bundle: each report's OCI manifest has the bundle's OCI
manifest as its `subject`. Registries with the referrers API index them; for those without (Distribution 2.8,
Debian's docker-registry) the client keeps the distribution spec's referrers tag, an index tagged sha256-<hex>."""
from __future__ import annotations

import hashlib
import tempfile
import warnings
from pathlib import Path

from edgekit.core import bundle as manifest
from edgekit.errors import PublishError
from edgekit.publish import registry
from edgekit.publish import reports as bench
from edgekit.publish.bundles import safe_files, verified

REPORT_SHA = "vnd.edgekit.report.sha256"
BENCH = "vnd.edgekit.bench."  # a report's summary (reports.summary), annotated on its manifest for `edgekit ls`


def referrers_tag(digest: str) -> str:
    """The OCI distribution spec's referrers tag schema, for registries without the referrers API (Distribution
    2.8, Debian's docker-registry): an index tagged sha256-<hex> lists what refers to sha256:<hex>."""
    return digest.replace(":", "-")


def referrers(client, ref: registry.OciRef, digest: str) -> tuple[list[dict], bool]:
    """Descriptors of the manifests whose subject is `digest`, and whether the registry has the referrers API."""
    with registry.quiet():
        r = client.do_request(registry.url(client, ref, f"referrers/{digest}"), "GET", headers={"Accept": registry.INDEX})
    if r.status_code == 200 and registry.INDEX in r.headers.get("Content-Type", ""):
        return r.json().get("manifests", []), True
    got = registry.raw(client, ref, referrers_tag(digest))
    return (got[1].get("manifests", []) if got else []), False


def reports_of(client, ref: registry.OciRef, digest: str) -> list[dict]:
    """The bench reports' descriptors among the referrers (anything else, or malformed, is not ours to read)."""
    return [d for d in referrers(client, ref, digest)[0] if isinstance(d, dict) and
            d.get("artifactType") == bench.MEDIA_TYPE and isinstance(d.get("digest"), str)
            and isinstance(d.get("annotations", {}), dict)]


def _index_add(client, ref: registry.OciRef, subject: str, added: list[dict]) -> None:
    """For a registry that does not index subjects: the referrers tag's index, with `added` appended."""
    now = registry.raw(client, ref, referrers_tag(subject))
    listed = (now[1].get("manifests", []) if now else []) + added
    registry.put(client, ref, referrers_tag(subject), {"schemaVersion": 2, "mediaType": registry.INDEX,
                                                       "manifests": listed}, registry.INDEX)


def _put_report(client, ref: registry.OciRef, doc: dict) -> tuple[dict, bool]:
    """A report's OCI manifest put by digest; its descriptor, and whether the registry indexed its subject."""
    digest, size, resp = registry.put(client, ref, "", doc, registry.IMAGE_MANIFEST)
    return ({"mediaType": registry.IMAGE_MANIFEST, "digest": digest, "size": size, "artifactType": bench.MEDIA_TYPE,
             "annotations": doc.get("annotations") or {}}, bool(resp.headers.get("OCI-Subject")))


def follow(client, ref: registry.OciRef, old: bytes, new: bytes) -> int:
    """Signing a published bundle puts a new OCI manifest: its reports are pointed at the new one (their blobs stay
    where they are). Returns how many."""
    subject = {"mediaType": registry.IMAGE_MANIFEST, "digest": registry.digest(new), "size": len(new)}
    added, api = [], False
    for d in reports_of(client, ref, registry.digest(old)):
        got = registry.raw(client, ref, d["digest"])
        if got is None or registry.digest(got[0]) != d["digest"]:
            continue  # gone or altered: nothing to carry over
        desc, indexed = _put_report(client, ref, {**got[1], "subject": subject})
        added.append(desc)
        api = api or indexed
    if added and not api:
        _index_add(client, ref, subject["digest"], added)
    return len(added)


def attach(bundle: Path, dest: str, insecure: bool, runs: list[dict]) -> str:
    """Each bench report an artifact whose subject is the bundle's OCI manifest (the bundle is not uploaded
    again), found through the referrers API or, where the registry has none, the referrers tag."""
    m = verified(bundle)
    ref = registry.parse_oci(dest)
    tag = ref.tag or m["name"]
    client = registry.client_for(ref, insecure)
    got = registry.raw(client, ref, tag)
    ours = manifest.file_sha256(bundle / manifest.MANIFEST)
    if got is None or (got[1].get("annotations") or {}).get("vnd.edgekit.manifest.sha256") != ours:
        raise PublishError(f"oci://{ref.at(tag)} does not hold this build of {m['name']}: publish the bundle first")
    subject = {"mediaType": registry.IMAGE_MANIFEST, "digest": registry.digest(got[0]), "size": len(got[0])}
    have, api = referrers(client, ref, subject["digest"])
    known = {(d.get("annotations") or {}).get(REPORT_SHA) for d in have}
    container = client.get_container(ref.at(tag))
    added = []
    for run in runs:
        data = bench.encode(run)
        sha = hashlib.sha256(data).hexdigest()
        if sha in known:
            continue
        name = bench.file_name(data)
        layer = {"mediaType": bench.MEDIA_TYPE, "digest": "sha256:" + sha, "size": len(data),
                 "annotations": {registry.TITLE: name}}
        with tempfile.TemporaryDirectory() as td, registry.quiet():
            (Path(td) / name).write_bytes(data)
            if not client.blob_exists(layer, container):
                registry.check(client.upload_blob(str(Path(td) / name), container, layer), f"bench report {name}")
        notes = {REPORT_SHA: sha, registry.TITLE: name, **{BENCH + k: v for k, v in bench.summary(run).items()}}
        doc = {"schemaVersion": 2, "mediaType": registry.IMAGE_MANIFEST, "artifactType": bench.MEDIA_TYPE,
               "config": registry.empty_config(client, container), "layers": [layer], "subject": subject,
               "annotations": notes}
        desc, indexed = _put_report(client, ref, doc)
        added.append(desc)
        api = api or indexed
    if not added:
        return f"oci://{ref.at(tag)} already holds these bench reports: nothing to attach"
    if not api:  # the registry does not index subjects: keep the referrers tag's index up to date ourselves
        _index_add(client, ref, subject["digest"], added)
    how = "referrers API" if api else f"referrers tag {referrers_tag(subject['digest'])[:19]}..."
    return f"attached {len(added)} bench report(s) to oci://{ref.at(tag)} ({how})"


def pull_reports(client, ref: registry.OciRef, container, subject: str, bundle_sha: str, where: str) -> dict[str, bytes]:
    """The bench reports referring to the bundle's OCI manifest, each checked against its manifest's digest, its
    blob's digest and the bundle it says it measured."""
    out = {}
    for d in reports_of(client, ref, subject):
        got = registry.raw(client, ref, d["digest"])
        if got is None:  # deleted from the registry, still in the referrers tag's index
            warnings.warn(f"{where}: bench report {d['digest'][:19]}... is listed but gone from the registry; "
                          "skipped")
            continue
        if registry.digest(got[0]) != d["digest"]:
            raise PublishError(f"refusing {where}: a bench report's manifest does not match its digest")
        layer = (got[1].get("layers") or [{}])[0]
        name = (layer.get("annotations") or {}).get(registry.TITLE, "")
        safe_files([name])
        if not isinstance(layer.get("digest"), str):
            raise PublishError(f"refusing {where}: bench report {name} names no blob digest")
        with registry.quiet():
            resp = client.get_blob(container, layer["digest"])
        registry.check(resp, f"bench report {name}")
        bench.check(name, resp.content, layer["digest"], bundle_sha, where)
        out[name] = resp.content
    return out
