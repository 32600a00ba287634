"""edgekit publish / pull / ls against a real OCI registry (Debian's docker-registry on 127.0.0.1) and a directory:
round trip, idempotence, --force, tampering, path escapes, an unreachable registry, and bench on a pulled bundle."""
import json
import shutil
import subprocess
import time

import pytest

from edgekit.core import bundle as manifest

from . import tiny
from .conftest import free_port, run_cli, wait_for_port

NAME = f"{tiny.NAME}-{tiny.VARIANT.name}-x86-int8"  # conftest.tiny_bundle


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    exe = shutil.which("docker-registry")
    if not exe:
        pytest.skip("docker-registry is not installed here: run `sudo bash scripts/test_system.sh` once (.ci/run does)")
    d = tmp_path_factory.mktemp("registry")
    port = free_port()
    (d / "config.yml").write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: "
                                  f"{d / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([exe, "serve", str(d / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=open(d / "log", "w"))
    if not wait_for_port(port):
        proc.kill()
        pytest.fail(f"registry did not start: {(d / 'log').read_text()}")
    yield {"host": f"127.0.0.1:{port}", "data": d / "data"}
    proc.terminate()
    proc.wait(timeout=10)


def test_bundle_carries_a_model_card(tiny_bundle):
    bundle = tiny_bundle
    m = manifest.read(bundle)
    card = (bundle / "README.md").read_text()
    assert "README.md" in m["files"] and card.startswith(f"# {NAME}")
    assert "[1, 3, 48, 48], NCHW, float32" in card and "edgekit bench ." in card
    assert f"{100 * m['validation']['top1_agreement']:.2f} %" in card


def test_oci_round_trip_idempotent_force_and_bench(registry, tiny_bundle, tmp_path):
    bundle = tiny_bundle
    repo = f"oci://{registry['host']}/edgekit/models"
    r = run_cli("publish", str(bundle), "--to", repo, check=True)
    assert f"{repo}:{NAME}" in r.stdout
    r = run_cli("publish", str(bundle), "--to", repo, check=True)
    assert "nothing to do" in r.stdout
    listing = json.loads(run_cli("ls", repo, "--json", check=True).stdout)
    assert [x["name"] for x in listing] == [NAME]
    row = listing[0]
    assert row["vnd.edgekit.variant"] == "tiny" and row["vnd.edgekit.target"] == "x86"
    assert float(row["vnd.edgekit.agreement"]) == pytest.approx(manifest.read(bundle)["validation"]["top1_agreement"],
                                                                abs=1e-4)
    run_cli("pull", f"{repo}:{NAME}", "--to", str(tmp_path / "pulled"), check=True)
    pulled = tmp_path / "pulled" / NAME
    manifest.read(pulled)
    assert sorted(p.name for p in pulled.iterdir()) == sorted(p.name for p in bundle.iterdir())
    # a different bundle under the same tag needs --force
    other = tmp_path / "other" / NAME
    shutil.copytree(bundle, other)
    m = json.loads((other / "manifest.json").read_text())
    m["created"] = "2000-01-01T00:00:00+00:00"
    (other / "manifest.json").write_text(json.dumps(m))
    r = run_cli("publish", str(other), "--to", repo)
    assert r.returncode == 2 and "--force" in r.stderr
    run_cli("publish", str(other), "--to", repo, "--force", check=True)
    run_cli("publish", str(bundle), "--to", repo, "--force", check=True)
    # the pulled bundle measures as the original does
    hist = {"EDGEKIT_HISTORY": str(tmp_path / "h.jsonl")}
    reps = []
    for b in (bundle, pulled):
        out = tmp_path / f"{len(reps)}.json"
        run_cli("bench", str(b), "--runs", "2", "--threads", "1", "--json", str(out), env=hist, check=True)
        reps.append(json.loads(out.read_text())["golden"])
    assert reps[0] == reps[1]


def test_tampered_blob_is_refused_and_nothing_written(registry, tiny_bundle, tmp_path):
    bundle = tiny_bundle
    ref = f"oci://{registry['host']}/edgekit/tamper:t1"
    run_cli("publish", str(bundle), "--to", ref, check=True)
    digest = manifest.file_sha256(bundle / "labels.txt")
    blob = registry["data"] / "docker/registry/v2/blobs/sha256" / digest[:2] / digest / "data"
    original = blob.read_bytes()
    blob.write_bytes(original.replace(b"cat", b"cow"))
    try:
        r = run_cli("pull", ref, "--to", str(tmp_path / "out"))
    finally:  # blobs are shared by content across the registry's repositories: later tests pull this one too
        blob.write_bytes(original)
    assert r.returncode == 2 and "labels.txt does not match its digest" in r.stderr
    assert not (tmp_path / "out").exists()  # no bundle, no temporary left behind


def test_unreachable_registry_fails_fast(tiny_bundle):
    t = time.perf_counter()
    r = run_cli("publish", str(tiny_bundle), "--to", f"oci://127.0.0.1:{free_port()}/x/y")
    assert r.returncode == 2 and "unreachable" in r.stderr and r.stderr.count("\n") == 1
    assert time.perf_counter() - t < 20
    r = run_cli("publish", str(tiny_bundle), "--to", "oci://Bad Host/x")
    assert r.returncode == 2 and "oci://" in r.stderr


def test_directory_round_trip_and_refusals(tiny_bundle, tmp_path):
    bundle = tiny_bundle
    dest = tmp_path / "shelf"
    assert "published" in run_cli("publish", str(bundle), "--to", f"file://{dest}", check=True).stdout
    assert "nothing to do" in run_cli("publish", str(bundle), "--to", str(dest), check=True).stdout
    rows = json.loads(run_cli("ls", str(dest), "--json", check=True).stdout)
    assert [x["name"] for x in rows] == [NAME]
    run_cli("pull", str(dest / NAME), "--to", str(tmp_path / "got"), check=True)
    manifest.read(tmp_path / "got" / NAME)
    # a truncated file in the store is refused on pull, and nothing is placed
    run_cli("publish", str(bundle), "--to", str(tmp_path / "broken"), check=True)
    broken = tmp_path / "broken" / NAME
    with open(broken / "model.int8.bin", "r+b") as f:
        f.truncate(1000)
    r = run_cli("pull", str(broken), "--to", str(tmp_path / "got2"))
    assert r.returncode == 2 and "does not match its sha256" in r.stderr
    assert not (tmp_path / "got2").exists()
    # a manifest naming a file outside the bundle is refused before anything is read or written
    escape = tmp_path / "escape" / NAME
    shutil.copytree(bundle, escape)
    m = json.loads((escape / "manifest.json").read_text())
    m["files"]["../evil.txt"] = "0" * 64
    (escape / "manifest.json").write_text(json.dumps(m))
    r = run_cli("publish", str(escape), "--to", str(tmp_path / "shelf2"))
    assert r.returncode == 2 and not (tmp_path / "evil.txt").exists()


def test_registry_credentials_from_env_or_docker_config_never_printed(tiny_bundle, tmp_path):
    """A registry with htpasswd (bcrypt) basic auth: env credentials, Docker config, refusals; secret never shown."""
    import base64
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # glibc bcrypt, what the registry's htpasswd wants

    exe = shutil.which("docker-registry")
    if not exe:
        pytest.skip("docker-registry is not installed here: run `sudo bash scripts/test_system.sh` once (.ci/run does)")
    secret = "s3cret-Pa55"
    (tmp_path / "htpasswd").write_text(f"edge:{crypt.crypt(secret, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
    port = free_port()
    (tmp_path / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"auth:\n  htpasswd:\n    realm: edgekit-test\n    path: {tmp_path / 'htpasswd'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([exe, "serve", str(tmp_path / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert wait_for_port(port), "registry did not start"
        repo = f"oci://127.0.0.1:{port}/edge/models"
        nobody = {"DOCKER_CONFIG": str(tmp_path / "empty")}
        r = run_cli("publish", str(tiny_bundle), "--to", repo, env=nobody)
        assert r.returncode == 2 and "asks for credentials" in r.stderr
        env = {**nobody, "EDGEKIT_REGISTRY_USERNAME": "edge", "EDGEKIT_REGISTRY_PASSWORD": secret}
        r = run_cli("publish", str(tiny_bundle), "--to", repo, env=env, check=True)
        assert "published" in r.stdout and secret not in r.stdout + r.stderr
        (tmp_path / "docker").mkdir()
        auth = base64.b64encode(f"edge:{secret}".encode()).decode()
        (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {f"127.0.0.1:{port}": {"auth": auth}}}))
        r = run_cli("ls", repo, env={"DOCKER_CONFIG": str(tmp_path / "docker")}, check=True)
        assert NAME in r.stdout and secret not in r.stdout + r.stderr
        r = run_cli("ls", repo, env={**env, "EDGEKIT_REGISTRY_PASSWORD": "wrong-" + secret})
        assert r.returncode == 2 and "Unauthorized" in r.stderr and secret not in r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_registry_not_found_is_read_from_the_reason_not_the_url():
    """A 401 from a registry on port 34047 once listed as empty: '404' was matched anywhere in the message."""
    from edgekit.publish.registry import not_found as _not_found

    assert _not_found(ValueError("Issue with http://127.0.0.1:5000/v2/edge/models/tags/list: Not Found"))
    assert not _not_found(ValueError("Issue with http://127.0.0.1:34047/v2/edge/models/tags/list: Unauthorized"))
    assert not _not_found(ValueError("Issue with http://127.0.0.1:40404/v2/edge/models/manifests/x: Forbidden"))


def test_the_device_install_pulls_a_signed_bundle(registry, default_build, device_venv, tmp_path):
    """On the board, edgekit as the model card installs it (its wheel, device extra) pulls from a registry and
    checks the signature: the device extras bring oras and cryptography."""
    repo = f"oci://{registry['host']}/edgekit/board"
    run_cli("keygen", str(tmp_path / "key"), check=True)
    run_cli("publish", str(default_build[0]), "--to", repo, "--sign", str(tmp_path / "key"), check=True)
    edgekit = str(device_venv.venv / "bin" / "edgekit")
    r = subprocess.run([edgekit, "pull", f"{repo}:lite0-x86-int8", "--to", str(tmp_path / "board"), "--verify-key",
                        str(tmp_path / "key.pub")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert manifest.read(tmp_path / "board" / "lite0-x86-int8")["name"] == "lite0-x86-int8"


def test_a_signed_artifact_under_another_tag_is_refused(registry, tiny_bundle, tmp_path):
    """Someone who can push to the registry points another tag at a signed bundle's OCI manifest: the signature
    names the tag it was signed for, so a verified pull of the other tag is refused."""
    import urllib.request

    run_cli("keygen", str(tmp_path / "key"), check=True)
    repo = f"oci://{registry['host']}/edgekit/retag"
    run_cli("publish", str(tiny_bundle), "--to", repo, "--sign", str(tmp_path / "key"), check=True)
    accept = "application/vnd.oci.image.manifest.v1+json"
    url = f"http://{registry['host']}/v2/edgekit/retag/manifests"
    with urllib.request.urlopen(urllib.request.Request(f"{url}/{NAME}", headers={"Accept": accept})) as r:
        body = r.read()
    put = urllib.request.Request(f"{url}/lite4-x86-int8", data=body, method="PUT", headers={"Content-Type": accept})
    urllib.request.urlopen(put).close()
    r = run_cli("pull", f"{repo}:lite4-x86-int8", "--to", str(tmp_path / "got"), "--verify-key",
                str(tmp_path / "key.pub"))
    assert r.returncode == 2 and f"signed as 'edgekit/retag:{NAME}', not as 'edgekit/retag:lite4-x86-int8'" \
        in r.stderr, r.stderr
    assert not (tmp_path / "got").exists()
    run_cli("pull", f"{repo}:{NAME}", "--to", str(tmp_path / "got"), "--verify-key",
            str(tmp_path / "key.pub"), check=True)
