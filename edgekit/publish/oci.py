"""An OCI registry store (through `oras`): a bundle is an artifact whose layers are its files, tagged by name.

Every blob is checked against its digest and the bundle manifest against the digest it was published with; blobs
uploaded by an interrupted publish are unreferenced, so the tag still names what it named before."""
from __future__ import annotations

import contextlib
import hashlib
import io
import ipaddress
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from edgekit.core import bundle as manifest
from edgekit.errors import PublishError
from edgekit.publish import credentials, signing
from edgekit.publish.bundles import annotations, place, safe_files, verified

ARTIFACT_TYPE = "application/vnd.edgekit.bundle.v1"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
TITLE = "org.opencontainers.image.title"
MEDIA_TYPES = {".xml": "application/vnd.edgekit.openvino.xml", ".bin": "application/vnd.edgekit.openvino.bin",
               ".onnx": "application/vnd.edgekit.onnx", ".tflite": "application/vnd.edgekit.tflite",
               ".npz": "application/vnd.edgekit.golden.npz", ".json": "application/vnd.edgekit.manifest.v1+json",
               ".txt": "text/plain", ".md": "text/markdown"}
CONNECT_TIMEOUT_S = 10
SIGNATURE = "vnd.edgekit.signature"  # Ed25519 over the bundle manifest's sha256 (publish/signing.py), base64
SIGNATURE_KEY = "vnd.edgekit.signature.key-id"
SIGNATURE_ALG = "vnd.edgekit.signature.algorithm"


@dataclass(frozen=True)
class OciRef:
    host: str  # host[:port]
    repo: str
    tag: str | None

    @property
    def insecure_ok(self) -> bool:
        name = self.host.rsplit(":", 1)[0].strip("[]")
        if name == "localhost":
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    def at(self, tag: str) -> str:
        return f"{self.host}/{self.repo}:{tag}"


def parse_oci(ref: str) -> OciRef:
    u = urlparse(ref)
    if u.scheme != "oci" or not u.netloc or not u.path.strip("/"):
        raise PublishError(f"{ref!r}: expected oci://HOST[:PORT]/REPO[:TAG]")
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?|\[[0-9a-fA-F:]+\](:\d{1,5})?", u.netloc):
        raise PublishError(f"{ref!r}: {u.netloc!r} is not a registry HOST[:PORT]; expected oci://HOST[:PORT]/REPO[:TAG]")
    path = u.path.strip("/")
    repo, _, tag = path.partition(":")
    if not re.fullmatch(r"[a-z0-9]+([._/-][a-z0-9]+)*", repo) or (tag and not re.fullmatch(r"[\w][\w.-]{0,127}", tag)):
        raise PublishError(f"{ref!r}: repository names are lowercase letters, digits and ._-/, tags word characters")
    return OciRef(u.netloc, repo, tag or None)


@contextlib.contextmanager
def _quiet():
    """oras prints and logs request details; keep them (and anything credential-bearing) out of our output."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _client(ref: OciRef, insecure: bool):
    try:
        import oras.client
    except ImportError:
        raise PublishError("publishing to a registry needs oras: in an edgekit checkout, pip install '.[publish]'") \
            from None
    plain_http = ref.insecure_ok or insecure
    host, _, port = ref.host.rpartition(":") if ":" in ref.host.strip("[]") else (ref.host, "", "")
    port_n = int(port) if port.isdigit() else (80 if plain_http else 443)
    try:  # bounded: a registry that does not answer fails here, not in a hanging request
        socket.create_connection((host or ref.host, port_n), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise PublishError(f"registry {ref.host} is unreachable ({e.strerror or e}); is it running, and is "
                           "HOST:PORT right?") from None
    scheme = _auth_scheme(ref, plain_http)
    client = oras.client.OrasClient(hostname=ref.host, insecure=plain_http, auth_backend=scheme)
    creds = credentials.for_host(ref.host)
    if creds:
        with _quiet():  # credentials must never reach a log
            client.auth.set_basic_auth(*creds)
    elif scheme == "basic":
        raise PublishError(f"registry {ref.host} asks for credentials: set EDGEKIT_REGISTRY_USERNAME and "
                           f"EDGEKIT_REGISTRY_PASSWORD, or docker login {ref.host}")
    return client


def _auth_scheme(ref: OciRef, plain_http: bool) -> str:
    """'basic' for registries that ask for HTTP basic auth (htpasswd), else oras's token flow (Bearer)."""
    import requests

    try:
        r = requests.get(f"{'http' if plain_http else 'https'}://{ref.host}/v2/", timeout=CONNECT_TIMEOUT_S)
    except requests.RequestException:
        return "token"  # the real request will report the problem
    return "basic" if r.headers.get("WWW-Authenticate", "").lower().startswith("basic") else "token"


def _not_found(e: ValueError) -> bool:
    """oras raises ValueError("Issue with URL: REASON"); only the reason counts (a port such as 34047 must not
    read as a 404)."""
    return str(e).strip().splitlines()[0].endswith(": Not Found")


def _get_manifest(client, target: str) -> dict | None:
    try:
        with _quiet():
            return client.get_manifest(client.get_container(target))
    except ValueError as e:
        if _not_found(e):
            return None
        raise PublishError(f"registry error for {target}: {str(e).splitlines()[0]}") from None


def _check(resp, what: str) -> None:
    if resp.status_code not in (200, 201, 202):
        raise PublishError(f"registry refused {what}: HTTP {resp.status_code} {resp.text.strip()[:200]}")


def publish(bundle: Path, dest: str, force: bool, insecure: bool, sign_key: Path | None = None) -> str:
    m = verified(bundle)
    ref = parse_oci(dest)
    tag = ref.tag or m["name"]
    target = ref.at(tag)
    client = _client(ref, insecure)
    ours = manifest.file_sha256(bundle / manifest.MANIFEST)
    notes = annotations(m, ours)
    if sign_key:
        sig = signing.sign(sign_key, ours)
        notes.update({SIGNATURE: sig["signature"], SIGNATURE_KEY: sig["key_id"], SIGNATURE_ALG: sig["algorithm"]})
    existing = _get_manifest(client, target)
    if existing is not None:
        have = existing.get("annotations") or {}
        if have.get("vnd.edgekit.manifest.sha256") == ours:
            if not sign_key or have.get(SIGNATURE) == notes[SIGNATURE]:
                return f"oci://{target} already holds this bundle: nothing to do"
            force = True  # the same bundle, signed now: only the OCI manifest changes
        if not force:
            raise PublishError(f"oci://{target} holds a different bundle; pass --force to replace the tag")
    container = client.get_container(target)
    layers = []
    for f in sorted(list(m["files"]) + [manifest.MANIFEST]):
        p = bundle / f
        layer = {"mediaType": MEDIA_TYPES.get(p.suffix, "application/octet-stream"),
                 "digest": "sha256:" + manifest.file_sha256(p), "size": p.stat().st_size,
                 "annotations": {TITLE: f}}
        with _quiet():
            if not client.blob_exists(layer, container):
                _check(client.upload_blob(str(p), container, layer), f"blob {f}")
        layers.append(layer)
    with tempfile.TemporaryDirectory() as td:
        cfg = Path(td) / "config.json"
        cfg.write_bytes(b"{}")
        config = {"mediaType": EMPTY_CONFIG, "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(), "size": 2}
        with _quiet():
            if not client.blob_exists(config, container):
                _check(client.upload_blob(str(cfg), container, config), "config blob")
    oci_manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "artifactType": ARTIFACT_TYPE, "config": config, "layers": layers,
                    "annotations": notes}
    # the tag moves only now, in one request: an interrupted publish leaves it where it was
    with _quiet():
        _check(client.upload_manifest(oci_manifest, container), "the manifest")
    signed = f" (signed by key {notes[SIGNATURE_KEY]})" if sign_key else ""
    return f"published {m['name']} to oci://{target}{signed}"


def pull(src: str, to: Path, force: bool, insecure: bool, verify_key: Path | None = None) -> Path:
    ref = parse_oci(src)
    if not ref.tag:
        raise PublishError(f"{src!r}: name a tag (oci://HOST/REPO:TAG); edgekit ls lists them")
    client = _client(ref, insecure)
    target = ref.at(ref.tag)
    om = _get_manifest(client, target)
    if om is None:
        raise PublishError(f"oci://{target} does not exist")
    if om.get("artifactType") != ARTIFACT_TYPE:
        raise PublishError(f"oci://{target} is not an edgekit bundle (artifact type {om.get('artifactType')})")
    titles = [(layer.get("annotations") or {}).get(TITLE, "") for layer in om.get("layers", [])]
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
            with _quiet():
                resp = client.get_blob(container, layer["digest"], stream=True)
            _check(resp, f"blob {title}")
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
        if verify_key:
            sig = {"signature": notes.get(SIGNATURE), "key_id": notes.get(SIGNATURE_KEY),
                   "algorithm": notes.get(SIGNATURE_ALG)} if notes.get(SIGNATURE) else None
            signing.verify(verify_key, got, sig, f"oci://{target}")
        return place(tmp, to, force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ls(dest: str, insecure: bool) -> list[dict]:
    ref = parse_oci(dest)
    client = _client(ref, insecure)
    try:
        with _quiet():
            tags = client.get_tags(client.get_container(f"{ref.host}/{ref.repo}"))
    except ValueError as e:
        if _not_found(e):
            return []
        raise PublishError(f"registry error listing {dest}: {str(e).splitlines()[0]}") from None
    out = []
    for tag in tags or []:
        om = _get_manifest(client, ref.at(tag))
        if om and om.get("artifactType") == ARTIFACT_TYPE:
            out.append({"name": tag, **(om.get("annotations") or {})})
    return out


@contextlib.contextmanager
def registry_errors():
    """Network and HTTP failures inside oras become one clear error, never a traceback."""
    try:
        import requests
    except ImportError:  # a device install without the publish extra
        raise PublishError("a registry needs oras: in an edgekit checkout, pip install '.[publish]'") from None

    try:
        yield
    except requests.exceptions.SSLError:
        raise PublishError("registry TLS failed (certificate not trusted here, or a plain-HTTP registry): trust its "
                           "certificate, or pass --insecure for plain HTTP") from None
    except requests.RequestException as e:
        raise PublishError(f"registry request failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
