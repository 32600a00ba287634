"""Stores that cannot be fooled: a directory store checks the manifest against the digest recorded at publish
time, and signed bundles (edgekit keygen, publish --sign, pull --verify-key) refuse unsigned bundles, other signers
and altered manifests, with a directory store and with a real registry (Debian's docker-registry on 127.0.0.1)."""
import json
import shutil

from edgekit.core import bundle as manifest

from . import tiny
from .conftest import run_cli
from .test_publish import registry  # noqa: F401  (the module-scoped registry fixture)

NAME = f"{tiny.NAME}-{tiny.VARIANT.name}-x86-int8"  # conftest.tiny_bundle


def _alter_manifest(bundle_dir, key="top1_int8"):
    """One value of the manifest changed, with its file checksums still consistent: it vouches for itself."""
    m = json.loads((bundle_dir / "manifest.json").read_text())
    m["validation"][key] = 0.999
    (bundle_dir / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    manifest.read(bundle_dir)  # still "every file verified" on its own


def _keys(tmp_path):
    for who in ("alice", "mallory"):
        r = run_cli("keygen", str(tmp_path / "keys" / who), check=True)
        assert "public key" in r.stdout
    return {w: tmp_path / "keys" / w for w in ("alice", "mallory")}


def test_directory_store_refuses_a_manifest_changed_in_the_store(tiny_bundle, tmp_path):
    shelf = tmp_path / "shelf"
    run_cli("publish", str(tiny_bundle), "--to", str(shelf), check=True)
    assert json.loads((shelf / f"{NAME}.edgekit.json").read_text())["manifest_sha256"] == \
        manifest.file_sha256(tiny_bundle / "manifest.json")
    _alter_manifest(shelf / NAME)
    r = run_cli("pull", str(shelf / NAME), "--to", str(tmp_path / "got"))
    assert r.returncode == 2 and "does not match the digest recorded when it was published" in r.stderr
    assert not (tmp_path / "got").exists()  # nothing placed, no temporary left
    # the registry's STORE:NAME form, given a directory store, gets the directory form as a hint
    r = run_cli("pull", f"{shelf}:{NAME}", "--to", str(tmp_path / "got"))
    assert r.returncode == 2 and f"{shelf / NAME}" in r.stderr.splitlines()[-1]
    # a bundle copied in by hand has no record: refused, with what to do
    shutil.copytree(tiny_bundle, tmp_path / "loose" / NAME)
    r = run_cli("pull", str(tmp_path / "loose" / NAME), "--to", str(tmp_path / "got"))
    assert r.returncode == 2 and "publish it again" in r.stderr


def test_signed_directory_store(tiny_bundle, tmp_path):
    keys = _keys(tmp_path)
    assert oct((keys["alice"]).stat().st_mode & 0o777) == "0o600"
    r = run_cli("keygen", str(keys["alice"]))
    assert r.returncode == 2 and "--force" in r.stderr  # never overwrites a key silently
    shelf = tmp_path / "shelf"
    r = run_cli("publish", str(tiny_bundle), "--to", str(shelf), "--sign", str(keys["alice"]), check=True)
    assert "signed by key" in r.stdout
    got = tmp_path / "got"
    run_cli("pull", str(shelf / NAME), "--to", str(got), "--verify-key", f"{keys['alice']}.pub", check=True)
    assert manifest.file_sha256(got / NAME / "manifest.json") == manifest.file_sha256(tiny_bundle / "manifest.json")
    r = run_cli("pull", str(shelf / NAME), "--to", str(tmp_path / "no"), "--verify-key", f"{keys['mallory']}.pub")
    assert r.returncode == 2 and "signed by key" in r.stderr and "not by" in r.stderr
    assert not (tmp_path / "no").exists()
    # an unsigned bundle, where a signature is asked for
    run_cli("publish", str(tiny_bundle), "--to", str(tmp_path / "plain"), check=True)
    r = run_cli("pull", str(tmp_path / "plain" / NAME), "--to", str(tmp_path / "no"), "--verify-key",
                f"{keys['alice']}.pub")
    assert r.returncode == 2 and "not signed" in r.stderr
    # whoever can write the store alters the manifest and records its new digest: the signature no longer holds
    _alter_manifest(shelf / NAME)
    rec = json.loads((shelf / f"{NAME}.edgekit.json").read_text())
    rec["manifest_sha256"] = manifest.file_sha256(shelf / NAME / "manifest.json")
    (shelf / f"{NAME}.edgekit.json").write_text(json.dumps(rec))
    r = run_cli("pull", str(shelf / NAME), "--to", str(tmp_path / "no"), "--verify-key", f"{keys['alice']}.pub")
    assert r.returncode == 2 and "does not match its manifest" in r.stderr
    # ... or re-signs the altered bundle with another key: refused for the key the board trusts
    forged = tmp_path / "forged"
    shutil.copytree(shelf / NAME, forged / NAME)
    run_cli("publish", str(forged / NAME), "--to", str(tmp_path / "shelf2"), "--sign", str(keys["mallory"]),
            check=True)
    r = run_cli("pull", str(tmp_path / "shelf2" / NAME), "--to", str(tmp_path / "no"), "--verify-key",
                f"{keys['alice']}.pub")
    assert r.returncode == 2 and "not by" in r.stderr
    assert not (tmp_path / "no").exists()


def test_signed_registry(registry, tiny_bundle, tmp_path):  # noqa: F811
    keys = _keys(tmp_path)
    ref = f"oci://{registry['host']}/edgekit/signed:{NAME}"
    run_cli("publish", str(tiny_bundle), "--to", ref, check=True)  # unsigned first
    r = run_cli("pull", ref, "--to", str(tmp_path / "no"), "--verify-key", f"{keys['alice']}.pub")
    assert r.returncode == 2 and "not signed" in r.stderr
    r = run_cli("publish", str(tiny_bundle), "--to", ref, "--sign", str(keys["alice"]), check=True)
    assert "signed by key" in r.stdout  # the same bundle, now signed: only the OCI manifest is put again
    run_cli("pull", ref, "--to", str(tmp_path / "got"), "--verify-key", f"{keys['alice']}.pub", check=True)
    manifest.read(tmp_path / "got" / NAME)
    r = run_cli("pull", ref, "--to", str(tmp_path / "no"), "--verify-key", f"{keys['mallory']}.pub")
    assert r.returncode == 2 and "not by" in r.stderr
    # another bundle under the tag, signed by another key
    other = tmp_path / "other" / NAME
    shutil.copytree(tiny_bundle, other)
    _alter_manifest(other)
    run_cli("publish", str(other), "--to", ref, "--force", "--sign", str(keys["mallory"]), check=True)
    r = run_cli("pull", ref, "--to", str(tmp_path / "no"), "--verify-key", f"{keys['alice']}.pub")
    assert r.returncode == 2 and "not by" in r.stderr
    assert not (tmp_path / "no").exists()
    rows = json.loads(run_cli("ls", ref.rsplit(":", 1)[0], "--json", check=True).stdout)
    assert rows[0]["vnd.edgekit.signature.key-id"]
