"""Bench reports that travel with a published bundle: `edgekit publish --bench` attaches them (in a registry as
artifacts referring to the bundle's manifest, through the referrers tag Debian's docker-registry needs; in a
directory store beside the bundle), `edgekit ls` shows p50 INT8/FP32 per device kind, `edgekit pull` brings them
verified."""
import hashlib
import json
import shutil

import pytest

from edgekit.core import bundle as manifest
from edgekit.publish import reports

from .conftest import REPO, run_cli
from .test_publish import NAME
from .test_publish import registry  # noqa: F401  (the fixture: Debian's docker-registry on 127.0.0.1)


@pytest.fixture(scope="module")
def measured(tiny_bundle, tmp_path_factory):
    """Two real bench runs of the tiny bundle in one history: this machine, and the same run reading the Pi 4
    fixture tree for its fingerprint (another device kind in the listing)."""
    d = tmp_path_factory.mktemp("measured")
    hist = d / "history.jsonl"
    files = []
    for name, env in (("here", {}), ("pi4", {"EDGEKIT_SYSROOT": str(REPO / "tests/fixtures/sysroots/pi4")})):
        out = d / f"{name}.json"
        run_cli("bench", str(tiny_bundle), "--runs", "2", "--warmup", "1", "--threads", "1", "--golden-limit",
                "4", "--json", str(out), env={"EDGEKIT_HISTORY": str(hist), **env}, check=True)
        files.append(out)
    return {"history": hist, "files": files, "bundle": tiny_bundle}


def _blob(reg, digest: str):
    return reg["data"] / "docker/registry/v2/blobs/sha256" / digest[:2] / digest / "data"


def test_registry_attach_list_pull(registry, measured, tmp_path):  # noqa: F811
    bundle = measured["bundle"]
    repo = f"oci://{registry['host']}/edgekit/measured"
    run_cli("publish", str(bundle), "--to", repo, check=True)
    listing = json.loads(run_cli("ls", repo, "--json", check=True).stdout)
    assert listing[0]["bench"] == []  # nothing measured yet
    r = run_cli("publish", str(bundle), "--to", repo, "--bench", "history", "--history", str(measured["history"]),
                check=True)
    out = r.stdout.splitlines()
    assert "nothing to do" in out[0]  # the bundle is not uploaded again
    assert out[1].startswith("attached 2 bench report(s)") and "referrers tag sha256-" in out[1]
    again = run_cli("publish", str(bundle), "--to", repo, "--bench", str(measured["files"][0]), check=True)
    assert "nothing to attach" in again.stdout
    # the listing: per device kind, the p50s the reports measured
    rows = json.loads(run_cli("ls", repo, "--json", check=True).stdout)
    assert [x["name"] for x in rows] == [NAME]  # the referrers tag is no bundle
    got = {b["device"]: b for b in rows[0]["bench"]}
    runs = [json.loads(f.read_text()) for f in measured["files"]]
    assert len(got) == 2 and any(d.startswith("Raspberry Pi 4") for d in got)
    for run in runs:
        lat = run["latency"]["1"]
        b = next(b for b in got.values() if float(b["int8_p50_ms"]) == pytest.approx(lat["int8"]["p50_ms"], abs=1e-3))
        assert float(b["fp32_p50_ms"]) == pytest.approx(lat["fp32"]["p50_ms"], abs=1e-3)
    text = run_cli("ls", repo, check=True).stdout
    assert text.count("measured on") == 2 and "p50 INT8" in text
    # the pull brings them, byte for byte, beside the bundle
    r = run_cli("pull", f"{repo}:{NAME}", "--to", str(tmp_path / "got"), check=True)
    folder = tmp_path / "got" / f"{NAME}.bench"
    assert "2 bench report(s)" in r.stdout
    assert sorted(p.read_bytes() for p in folder.iterdir()) == sorted(reports.encode(x) for x in runs)
    # a report altered in the registry is refused, and nothing is placed
    data = reports.encode(runs[0])
    blob = _blob(registry, hashlib.sha256(data).hexdigest())
    original = blob.read_bytes()
    blob.write_bytes(original.replace(b'"int8"', b'"INT8"', 1))
    try:
        r = run_cli("pull", f"{repo}:{NAME}", "--to", str(tmp_path / "got2"))
    finally:
        blob.write_bytes(original)
    assert r.returncode == 2 and "does not match its digest" in r.stderr
    assert not (tmp_path / "got2").exists()


def test_report_of_another_build_is_refused_before_upload(registry, measured, tmp_path):  # noqa: F811
    other = tmp_path / "other.json"
    run = json.loads(measured["files"][0].read_text())
    run["bundle"]["manifest_sha256"] = "0" * 64
    other.write_text(json.dumps(run))
    repo = f"oci://{registry['host']}/edgekit/refused"
    r = run_cli("publish", str(measured["bundle"]), "--to", repo, "--bench", str(other))
    assert r.returncode == 2 and "measured another build" in r.stderr and r.stderr.count("\n") == 1
    assert json.loads(run_cli("ls", repo, "--json", check=True).stdout) == []  # not even the bundle went up
    for bad, says in (("nope.json", "No such file"), ("history", "no bench run of this build")):
        r = run_cli("publish", str(measured["bundle"]), "--to", str(tmp_path / "shelf"), "--bench", bad,
                    "--history", str(tmp_path / "empty.jsonl"))
        assert r.returncode == 2 and says in r.stderr, r.stderr


def test_directory_store_attach_list_pull(measured, tmp_path):
    bundle = measured["bundle"]
    shelf = tmp_path / "shelf"
    fleet_json = tmp_path / "fleet.json"  # what `bench --fleet --json` writes: reports under "reports"
    fleet_json.write_text(json.dumps({"rows": [], "reports": [json.loads(f.read_text()) for f in measured["files"]]}))
    r = run_cli("publish", str(bundle), "--to", str(shelf), "--bench", str(fleet_json), check=True)
    assert "attached 2 bench report(s)" in r.stdout
    record = json.loads((shelf / f"{NAME}.edgekit.json").read_text())
    assert len(record["reports"]) == 2
    assert sorted(p.name for p in (shelf / f"{NAME}.bench").iterdir()) == sorted(
        e["file"] for e in record["reports"])
    rows = json.loads(run_cli("ls", str(shelf), "--json", check=True).stdout)
    assert len(rows[0]["bench"]) == 2
    run_cli("pull", str(shelf / NAME), "--to", str(tmp_path / "got"), check=True)
    assert len(list((tmp_path / "got" / f"{NAME}.bench").iterdir())) == 2
    # republishing the same build keeps its reports; an altered report is refused on pull
    assert "nothing to do" in run_cli("publish", str(bundle), "--to", str(shelf), check=True).stdout
    victim = shelf / f"{NAME}.bench" / record["reports"][0]["file"]
    victim.write_bytes(victim.read_bytes().replace(b'"int8"', b'"INT8"', 1))
    r = run_cli("pull", str(shelf / NAME), "--to", str(tmp_path / "got3"))
    assert r.returncode == 2 and "does not match its digest" in r.stderr and not (tmp_path / "got3").exists()
    # a different build replacing it leaves no reports of the old one behind
    other = tmp_path / "other" / NAME
    shutil.copytree(bundle, other)
    m = json.loads((other / "manifest.json").read_text())
    m["created"] = "2000-01-01T00:00:00+00:00"
    (other / "manifest.json").write_text(json.dumps(m))
    run_cli("publish", str(other), "--to", str(shelf), "--force", check=True)
    assert not (shelf / f"{NAME}.bench").exists()
    assert json.loads(run_cli("ls", str(shelf), "--json", check=True).stdout)[0]["bench"] == []
    assert manifest.file_sha256(shelf / NAME / "manifest.json") == manifest.file_sha256(
        other / "manifest.json")


def test_directory_store_refuses_planted_and_escaping_reports(measured, tmp_path):
    """Whoever writes the store can add a report with the right digest: it must still have measured this build,
    and its file name must stay inside the store."""
    bundle = measured["bundle"]
    shelf = tmp_path / "shelf"
    run_cli("publish", str(bundle), "--to", str(shelf), "--bench", str(measured["files"][0]), check=True)
    record_file = shelf / f"{NAME}.edgekit.json"
    clean = record_file.read_text()
    other = json.loads(measured["files"][0].read_text())
    other["bundle"]["manifest_sha256"] = "1" * 64
    data = reports.encode(other)
    (shelf / f"{NAME}.bench" / reports.file_name(data)).write_bytes(data)
    record = json.loads(clean)
    record["reports"].append({"file": reports.file_name(data), "sha256": hashlib.sha256(data).hexdigest(),
                              "summary": reports.summary(other)})
    record_file.write_text(json.dumps(record))
    r = run_cli("pull", str(shelf / NAME), "--to", str(tmp_path / "got"))
    assert r.returncode == 2 and "measured another build" in r.stderr and not (tmp_path / "got").exists()
    record["reports"][-1]["file"] = "../../evil.json"
    record_file.write_text(json.dumps(record))
    for args in (["pull", str(shelf / NAME), "--to", str(tmp_path / "got")], ["ls", str(shelf)]):
        r = run_cli(*args)
        assert r.returncode == 2 and "refusing file name" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "evil.json").exists() and not (tmp_path / "got").exists()
    # a listed report that went missing is skipped with a warning; the bundle and the others still come
    record_file.write_text(clean)
    listed = json.loads(clean)["reports"][0]["file"]
    (shelf / f"{NAME}.bench" / listed).unlink()
    r = run_cli("pull", str(shelf / NAME), "--to", str(tmp_path / "got"), check=True)
    assert "missing from the store; skipped" in r.stderr and (tmp_path / "got" / NAME).is_dir()


def test_signing_a_published_bundle_keeps_its_reports(registry, measured, tmp_path):  # noqa: F811
    bundle = measured["bundle"]
    kid = run_cli("keygen", str(tmp_path / "key"), check=True).stdout.split("key id ")[1].split(",")[0]
    for dest in (f"oci://{registry['host']}/edgekit/resigned", str(tmp_path / "shelf")):
        run_cli("publish", str(bundle), "--to", dest, "--bench", "history", "--history", str(measured["history"]),
                check=True)
        assert " unsigned " in run_cli("ls", dest, check=True).stdout  # ls says who signed, or that no one did
        r = run_cli("publish", str(bundle), "--to", dest, "--sign", str(tmp_path / "key"), check=True)
        assert "signed by key" in r.stdout or "signature written" in r.stdout, r.stdout
        rows = json.loads(run_cli("ls", dest, "--json", check=True).stdout)
        assert len(rows[0]["bench"]) == 2, (dest, rows[0]["bench"])
        assert rows[0]["vnd.edgekit.signature.key-id"] == kid and f" {kid} " in run_cli("ls", dest, check=True).stdout
        src = f"{dest}:{NAME}" if dest.startswith("oci://") else f"{dest}/{NAME}"
        got = tmp_path / ("got-oci" if dest.startswith("oci://") else "got-dir")
        r = run_cli("pull", src, "--to", str(got), "--verify-key", str(tmp_path / "key.pub"), check=True)
        assert "2 bench report(s)" in r.stdout and "not signed" in r.stdout


def test_ls_shows_the_agreement_interval_and_that_reports_are_not_signed(measured, tmp_path):
    """A signed bundle's listing: its agreement with the 95 % interval the build measured, and its bench reports
    said to be checked but not covered by the signature; the pull says the same."""
    bundle = measured["bundle"]
    shelf = tmp_path / "shelf"
    run_cli("keygen", str(tmp_path / "key"), check=True)
    run_cli("publish", str(bundle), "--to", str(shelf), "--sign", str(tmp_path / "key"), "--bench",
            str(measured["files"][0]), check=True)
    v = manifest.read(bundle)["validation"]
    lo, hi = v["top1_agreement_ci95"]
    row = json.loads(run_cli("ls", str(shelf), "--json", check=True).stdout)[0]
    assert [float(x) for x in row["vnd.edgekit.agreement.ci95"].split(",")] == pytest.approx([lo, hi], abs=1e-4)
    text = run_cli("ls", str(shelf), check=True).stdout
    assert f"{100 * v['top1_agreement']:.2f}% [{100 * lo:.1f}, {100 * hi:.1f}]" in text
    lines = text.splitlines()
    mark = next(i for i, line in enumerate(lines) if "a signature covers the bundle, not them" in line)
    assert lines[mark + 1].strip().startswith("measured on")
    r = run_cli("pull", str(shelf / NAME), "--to", str(tmp_path / "got"), "--verify-key", str(tmp_path / "key.pub"),
                check=True)
    assert "1 bench report(s)" in r.stdout and "not signed" in r.stdout
