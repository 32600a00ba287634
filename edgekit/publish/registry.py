"""The OCI registry client both kinds of artifact use (through `oras`): references, the connection and its
credentials, manifests read and put as the exact bytes their digest is of, and registry failures as one line."""
from __future__ import annotations

import contextlib
import hashlib
import io
import ipaddress
import json
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from edgekit.errors import PublishError
from edgekit.publish import credentials

EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
TITLE = "org.opencontainers.image.title"
CONNECT_TIMEOUT_S = 10


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
def quiet():
    """oras prints and logs request details; keep them (and anything credential-bearing) out of our output."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def client_for(ref: OciRef, insecure: bool):
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
        with quiet():  # credentials must never reach a log
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


def not_found(e: ValueError) -> bool:
    """oras raises ValueError("Issue with URL: REASON"); only the reason counts (a port such as 34047 must not
    read as a 404)."""
    return str(e).strip().splitlines()[0].endswith(": Not Found")


def get_manifest(client, target: str) -> dict | None:
    try:
        with quiet():
            return client.get_manifest(client.get_container(target))
    except ValueError as e:
        if not_found(e):
            return None
        raise PublishError(f"registry error for {target}: {str(e).splitlines()[0]}") from None


def check(resp, what: str) -> None:
    if resp.status_code not in (200, 201, 202):
        raise PublishError(f"registry refused {what}: HTTP {resp.status_code} {resp.text.strip()[:200]}")


def url(client, ref: OciRef, path: str) -> str:
    return f"{client.prefix}://{ref.host}/v2/{ref.repo}/{path}"


def raw(client, ref: OciRef, reference: str) -> tuple[bytes, dict] | None:
    """A manifest or index exactly as stored (its bytes are what its digest is of), or None."""
    with quiet():
        r = client.do_request(url(client, ref, f"manifests/{reference}"), "GET",
                              headers={"Accept": f"{IMAGE_MANIFEST}, {INDEX}"})
    if r.status_code == 404:
        return None
    check(r, f"reading {ref.repo}:{reference}")
    return r.content, r.json()


def put(client, ref: OciRef, reference: str, doc: dict, media_type: str) -> tuple[str, int, object]:
    """PUT a manifest or index; its digest, size and the response."""
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    with quiet():
        r = client.do_request(url(client, ref, f"manifests/{reference or digest(data)}"), "PUT",
                              headers={"Content-Type": media_type}, data=data)
    check(r, f"the {media_type.rsplit('.', 2)[-2]} for {ref.repo}")
    return digest(data), len(data), r


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def empty_config(client, container) -> dict:
    config = {"mediaType": EMPTY_CONFIG, "digest": digest(b"{}"), "size": 2}
    with quiet():
        if not client.blob_exists(config, container):
            with tempfile.TemporaryDirectory() as td:
                cfg = Path(td) / "config.json"
                cfg.write_bytes(b"{}")
                check(client.upload_blob(str(cfg), container, config), "config blob")
    return config


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
