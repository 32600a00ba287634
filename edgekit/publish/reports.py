"""Bench reports that travel with a published bundle: which reports belong to it, the bytes stored for each, the
summary a listing shows, and where a pull puts them (TO/<name>.bench/, beside the bundle).

A report belongs to a bundle when it measured that very build: its `bundle.manifest_sha256` is the digest of the
bundle's manifest. Stores keep each report under a name made of its own sha256, so attaching one twice is a no-op
and a pull verifies it like every other file."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from edgekit.core import bundle as manifest
from edgekit.errors import PublishError

MEDIA_TYPE = "application/vnd.edgekit.bench-report.v1+json"
SUFFIX = ".bench"  # TO/<name>.bench/ beside a pulled bundle, DEST/<name>.bench/ in a directory store
HISTORY = "history"  # --bench history: the bench history's runs of this bundle


def dir_of(bundle_dir: Path) -> Path:
    return bundle_dir.with_name(bundle_dir.name + SUFFIX)


def _reports_in(doc, source: str) -> list[dict]:
    """A bench report, or the reports of a fleet's JSON (`bench --fleet ... --json`)."""
    if isinstance(doc, dict) and "latency" in doc and "bundle" in doc:
        return [doc]
    if isinstance(doc, dict) and isinstance(doc.get("reports"), list):
        return [r for r in doc["reports"] if isinstance(r, dict) and "latency" in r]
    raise PublishError(f"--bench {source}: not a bench report (edgekit bench --json writes one)")


def collect(bundle_sha: str, bundle_name: str, sources: list[str], history: Path | None = None) -> list[dict]:
    """The reports of `sources` (files, or 'history': that file's latest run per device and runtime) that measured
    the bundle whose manifest digest is `bundle_sha`. A file that measured something else is refused by name."""
    from edgekit.device import compare
    from edgekit.device import history as history_mod

    out: list[dict] = []
    for src in sources:
        if src == HISTORY:
            runs = [r for r in history_mod.read_history(history)
                    if (r.get("bundle") or {}).get("manifest_sha256") == bundle_sha]
            if not runs:
                raise PublishError(f"no bench run of this build of {bundle_name} in "
                                   f"{history or history_mod.history_path()}: run edgekit bench on it first")
            latest: dict[tuple, dict] = {}
            for r in runs:
                latest[(compare.device_name(r), r["device"].get("runtime"))] = r
            out += latest.values()
            continue
        try:
            doc = json.loads(Path(src).read_text())
        except OSError as e:
            raise PublishError(f"--bench {src}: {e.strerror}") from None
        except json.JSONDecodeError:
            raise PublishError(f"--bench {src} is not JSON (edgekit bench --json writes a report)") from None
        for r in _reports_in(doc, src):
            if (r.get("bundle") or {}).get("manifest_sha256") != bundle_sha:
                raise PublishError(f"--bench {src} measured another build ({(r.get('bundle') or {}).get('name')}, "
                                   f"manifest {str((r.get('bundle') or {}).get('manifest_sha256'))[:12]}), not this "
                                   f"{bundle_name}")
            out.append(r)
    unique = {encode(r): r for r in out}
    return list(unique.values())


def encode(report: dict) -> bytes:
    """The bytes a store keeps: canonical JSON, so the same report always has the same digest."""
    return (json.dumps(report, indent=1, sort_keys=True, default=str) + "\n").encode()


def file_name(data: bytes) -> str:
    return f"bench-{hashlib.sha256(data).hexdigest()[:16]}.json"


def summary(report: dict) -> dict[str, str]:
    """What a listing shows of one report (strings: they are OCI annotations too)."""
    from edgekit.device import compare

    s = compare.summary(report)
    return {"device": s["device"], "runtime": s["runtime"], "threads": str(s["threads"]),
            "int8_p50_ms": f"{s['int8_p50_ms']:.3f}", "fp32_p50_ms": f"{s['fp32_p50_ms']:.3f}",
            "speedup": f"{s['speedup']:.3f}", "comparable": str(bool(s["comparable"])).lower(),
            "time": str(s["time"])}


def per_device(summaries: list[dict]) -> list[dict]:
    """The latest summary per device kind and runtime: what `edgekit ls` shows under a bundle."""
    latest: dict[tuple, dict] = {}
    for s in sorted(summaries, key=lambda s: s.get("time", "")):
        latest[(s.get("device"), s.get("runtime"))] = s
    return list(latest.values())


def place(files: dict[str, bytes], bundle_dir: Path) -> Path | None:
    """Verified reports written to <bundle>.bench/ (a temporary directory renamed into place), replacing what an
    earlier pull left there; None when the store has none for this bundle."""
    final = dir_of(bundle_dir)
    if not files:
        shutil.rmtree(final, ignore_errors=True)
        return None
    tmp = Path(tempfile.mkdtemp(prefix=manifest.temp_prefix(), dir=bundle_dir.parent))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        os.chmod(tmp, 0o755)
        manifest.replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def check(name: str, data: bytes, want_sha: str, bundle_sha: str, where: str) -> None:
    """A pulled report must be the bytes that were attached and must have measured the bundle pulled with it."""
    if hashlib.sha256(data).hexdigest() != want_sha.removeprefix("sha256:"):
        raise PublishError(f"refusing {where}: bench report {name} does not match its digest (altered in the store)")
    try:
        measured = (json.loads(data).get("bundle") or {}).get("manifest_sha256")
    except (json.JSONDecodeError, AttributeError):
        raise PublishError(f"refusing {where}: bench report {name} is not a report") from None
    if measured != bundle_sha:
        raise PublishError(f"refusing {where}: bench report {name} measured another build than the bundle")
