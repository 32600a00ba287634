"""The bundle: its file names, the manifest schema (versioned), checksums, and atomic writes. Written at build time,
read and verified by devices and stores (no build imports)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

from edgekit.core import contract
from edgekit.errors import BuildError, ManifestError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
LABELS = "labels.txt"
GOLDEN_FILE = "golden.npz"  # preprocessed validation inputs with PyTorch's FP32 logits (the board's self-check)
MODEL_CARD = "README.md"
EXAMPLE_IMAGE = "example.png"  # the first golden input, for the model card's commands


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_model_name(name: str) -> str:
    """A custom model's name: it starts bundle and file names, so it is a plain word."""
    if not _NAME.match(name or ""):
        raise BuildError(f"name {name!r}: use letters, digits, '.', '_' or '-' (at most 64, starting with a letter or "
                         "digit)")
    return name


def model_name_from(text: str) -> str:
    """A model name made from a folder or file name: other characters become '-', at most 64."""
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in text).strip(".-_")[:64].rstrip(".-_")
    return check_model_name(name or "custom")


def bundle_name(variant: str, target: str, name: str | None = None) -> str:
    """`lite0-x86-int8` for the ImageNet model; a custom model's name first: `flowers-lite0-x86-int8`."""
    return f"{name}-{variant}-{target}-int8" if name else f"{variant}-{target}-int8"


def folder_label(path: str | Path) -> str:
    """How a bundle names a folder of images: by its own name, never where it lay on the build machine."""
    return f"folder '{Path(path).name or path}'"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def artifact_bytes(bundle: Path, manifest: dict, precision: str = "int8") -> int:
    """Size of one precision's artifact files in the bundle (model.int8.xml + .bin, model.int8.onnx, ...)."""
    stem = Path(manifest["artifacts"][precision]).stem + "."
    return sum((Path(bundle) / f).stat().st_size for f in manifest["files"] if f.startswith(stem))


def checksums(bundle: Path) -> dict[str, str]:
    """sha256 of every file in the bundle except the manifest itself (relative POSIX paths)."""
    return {str(p.relative_to(bundle).as_posix()): file_sha256(p)
            for p in sorted(bundle.rglob("*")) if p.is_file() and p.name != MANIFEST}


def write(bundle: Path, manifest: dict) -> None:
    manifest = {"schema_version": SCHEMA_VERSION, **manifest, "files": checksums(bundle)}
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_MANIFEST_BYTES = 16 << 20  # a manifest is tens of kB; more is not one


def _plain_file_name(name: object) -> bool:
    """A file directly in the bundle: not absolute, no directory part, not . or .., no NUL."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name \
        and "\0" not in name and name != MANIFEST


def check_schema(m: object, path: Path) -> dict:
    """The manifest's shape, checked before anything reads it (a tampered or foreign file is one ManifestError line,
    never a traceback): a JSON object, `files` mapping plain file names in the bundle to sha256 digests, the
    artifacts among them, the fields the device side reads of the right types."""
    def bad(what: str):
        raise ManifestError(f"{path}: {what}; the bundle is damaged or not edgekit's: rebuild it or pull it again")

    if not isinstance(m, dict):
        bad(f"a JSON {type(m).__name__}, not an object")
    if m.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"{path}: schema version {m.get('schema_version')!r} is not supported "
                            f"(this edgekit reads {SCHEMA_VERSION})")
    files = m.get("files")
    if not isinstance(files, dict) or not files:
        bad("'files' is not a map of file names to sha256 digests")
    for name, digest in files.items():
        if not _plain_file_name(name):
            bad(f"'files' names {name!r}, not a file of the bundle's own directory")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            bad(f"'files' gives {name} no sha256 digest")
    for key, kind in (("name", str), ("artifacts", dict), ("target", dict), ("preprocessing", dict),
                      ("input", dict), ("output", dict), ("class_names", list)):
        if not isinstance(m.get(key), kind):  # what the device side reads: all present, of their kind
            bad(f"'{key}' is missing or not a {kind.__name__}")
    for precision in ("int8", "fp32"):
        name = m["artifacts"].get(precision)
        if not isinstance(name, str) or name not in files:
            bad(f"the {precision} artifact {name!r} is not among the bundle's checksummed files")
    if not isinstance(m["target"].get("runtime"), str) or not isinstance(m["target"].get("name"), str):
        bad("'target' names no runtime or no name")
    for key in ("class_names", "class_wnids"):
        value = m.get(key) or []
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            bad(f"'{key}' is not a list of names")
    if m.get("class_wnids") and len(m["class_wnids"]) != len(m["class_names"]):
        bad(f"{len(m['class_wnids'])} WordNet ids for {len(m['class_names'])} class names")
    pre = m["preprocessing"]
    if not all(isinstance(pre.get(k), int) and not isinstance(pre.get(k), bool) and pre[k] > 0
               for k in ("resize", "crop")):
        bad("'preprocessing' gives no resize and crop sizes")
    if pre.get("interpolation") not in contract.INTERPOLATIONS:
        bad(f"'preprocessing' names interpolation {pre.get('interpolation')!r}, not one of "
            f"{', '.join(contract.INTERPOLATIONS)}")
    for key in ("input", "fp32_input"):
        if key in m and (why := contract.problem(m[key])):
            bad(f"'{key}' {why}")
    variant = m.get("variant")
    if not isinstance(variant, dict) or not isinstance(variant.get("name"), str) \
            or not contract.finite_number(variant.get("macs")) or variant["macs"] <= 0:
        bad("'variant' gives no name and no positive count of multiply-accumulates (macs)")
    shape, names = m["output"].get("shape"), m["class_names"]
    if isinstance(shape, list) and shape and shape[-1] != len(names):
        bad(f"{len(names)} class names for {shape[-1]} outputs")
    return m


def read(bundle: Path, verify: bool = True) -> dict:
    path = Path(bundle) / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{bundle} is not an edgekit bundle (no {MANIFEST})")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{path} is not a manifest (over {MAX_MANIFEST_BYTES >> 20} MB)")
        m = json.loads(raw)
    except (ValueError, RecursionError) as e:  # invalid JSON, bad UTF-8, absurd nesting
        raise ManifestError(f"{path} is not valid JSON ({str(e)[:80] or type(e).__name__})") from None
    check_schema(m, path)
    if verify:
        for name, digest in m["files"].items():
            f = Path(bundle) / name
            if f.is_symlink():
                raise ManifestError(f"bundle file {name} is a symbolic link: a bundle holds its own files; copy or "
                                    "pull it again")
            if not f.is_file():
                raise ManifestError(f"bundle file missing: {name}; copy or pull the whole bundle again")
            if file_sha256(f) != digest:
                raise ManifestError(f"bundle file {name} does not match its sha256 in the manifest: the bundle was "
                                    "changed or damaged; copy or pull it again")
    return m


def read_verified(bundle: Path, m: dict, names: list[str]) -> dict[str, bytes]:
    """The bytes of bundle files `names`, each read once and checked against the manifest: what a runtime then loads
    is what was verified (a file swapped after a check cannot be run)."""
    out = {}
    for name in names:
        if name not in m["files"]:
            raise ManifestError(f"{name} is not among the bundle's checksummed files; rebuild or pull it again")
        try:
            fd = os.open(Path(bundle) / name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ManifestError(f"cannot read bundle file {name}: {e.strerror}; copy or pull the bundle again") \
                from None
        if hashlib.sha256(data).hexdigest() != m["files"][name]:
            raise ManifestError(f"bundle file {name} does not match its sha256 in the manifest: the bundle was "
                                "changed or damaged; copy or pull it again")
        out[name] = data
    return out


def _host() -> str:
    """A short tag of this machine: on a directory several machines share (a cluster's cache), a process id alone
    does not say whose a temporary is."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _owner() -> str:
    return f"{os.getpid()}-h{_host()}"


def temp_prefix(kind: str = "tmp") -> str:
    """Temporary names carry their owner's process id and machine, so that `sweep` can tell a killed writer's
    leftovers from a running writer's work."""
    return f".{kind}-{_owner()}-"


_OWNED = re.compile(r"^\.(?:tmp|nocache|old-.+)-(\d+)(?:-h([0-9a-f]{8}))?(?:-|$)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's, and running
        return True
    return True


def sweep(parent: Path) -> int:
    """Remove what killed writers left in `parent` (temporaries named by temp_prefix, `.old-*` of replace_dir)
    whose process is gone; returns how many. Never touches a running process's work."""
    removed = 0
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return 0
    for p in entries:
        m = _OWNED.match(p.name)
        if not m or (m.group(2) or _host()) != _host():  # another machine's: its process table is not ours
            continue
        if int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed += 1
    return removed


def prepare_out(out_root: Path) -> Path:
    """The output directory, made if missing and swept of what killed writers left; one line if it cannot be."""
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        sweep(out_root)
    except OSError as e:
        raise BuildError(f"cannot write to output directory {out_root}: {e.strerror}") from None
    return out_root


def replace_dir(tmp: Path, final: Path) -> None:
    """Put the finished directory `tmp` at `final`, replacing what is there: a reader sees the old or the new
    directory, never a mix."""
    if final.exists():
        old = final.with_name(f".old-{final.name}-{_owner()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def refuse_other_model(final: Path, weights_sha256: str, class_names: list[str]) -> None:
    """A bundle of other weights or other classes under the same name is not silently replaced (`--force`)."""
    if not (Path(final) / MANIFEST).is_file():
        return
    try:
        old = read(final, verify=False)
        same = old["weights"]["sha256"] == weights_sha256 and old["class_names"] == list(class_names)
    except (ManifestError, KeyError, TypeError):
        same = False
    if not same:
        raise BuildError(f"{final} holds a bundle of other weights or classes; pass --force to replace it, or --name "
                         "NAME / --out DIR to keep both")


def write_atomic(path: Path, data: bytes) -> Path:
    """Written to a temporary file beside `path`, then renamed: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, doc: dict) -> Path:
    """`doc` as indented JSON, written whole or not at all."""
    return write_atomic(path, json.dumps(doc, indent=2, default=str).encode())
