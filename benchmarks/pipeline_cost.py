"""Pipeline cost: `edgekit build` run as a user runs it (a separate process), cold and cached, per stage, with peak
memory (the build process's max RSS, from wait4)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Build:
    variant: str
    target: str
    wall_s: float
    peak_mb: float
    manifest: dict
    bundle: Path

    def stages(self) -> dict[str, dict]:
        return {k: s for k, s in self.manifest["timings"].items() if isinstance(s, dict)}

    def row(self) -> dict:
        v = self.manifest["validation"]
        return {"variant": self.variant, "target": self.target, "wall_s": round(self.wall_s, 1),
                "peak_mb": round(self.peak_mb), "stages": {k: {"seconds": s["seconds"], "cached": s["cached"]}
                                                           for k, s in self.stages().items()},
                "agreement": v.get("top1_agreement"), "logit_sqnr_db": v.get("logit_sqnr_db")}



def cpu() -> str:
    """The machine, as the benchmarks print it beside their figures."""
    from edgekit.device.fingerprint import fingerprint

    fp = fingerprint()
    features = ", ".join(k for k, on in fp["int8_features"].items() if on) or "no int8 dot-product instructions"
    ident = f" ({fp['cpu_id']})" if fp.get("cpu_id") else ""
    return f"{fp['cpu']}{ident}, {fp['cores']} cores, {features}"


def bench(bundle: Path, work: Path, runs: int, threads: str = "1,2") -> dict:
    """`edgekit bench BUNDLE --json` in its own process, with its own history file; the report."""
    out = work / f"{bundle.parent.name}-{bundle.name}.bench.json"  # bundles of one name in two --out dirs
    r = subprocess.run([sys.executable, "-m", "edgekit.cli", "bench", str(bundle), "--threads", threads, "--runs",
                        str(runs), "--json", str(out)], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "EDGEKIT_HISTORY": str(work / "history.jsonl")})
    if r.returncode != 0:
        sys.exit(f"edgekit bench {bundle} failed: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.read_text())

class BuildFailed(RuntimeError):
    pass


def build(variant: str, target: str, out: Path, cache: Path, common: list[str]) -> Build:
    """One `edgekit build --json` in its own process; wall time includes process start, as a user sees it."""
    args = [sys.executable, "-m", "edgekit.cli", "build", "--variant", variant, "--target", target, "--out", str(out),
            "--cache-dir", str(cache), "--json", *common]
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        t = time.perf_counter()
        p = subprocess.Popen(args, stdout=so, stderr=se, cwd=REPO)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0)
        se.seek(0)
        if p.returncode != 0:
            tail = se.read().decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise BuildFailed(f"edgekit build --variant {variant} --target {target} failed: {tail[0]}")
        m = json.loads(so.read())
    return Build(variant, target, wall, usage.ru_maxrss / 1024, m, out / m["name"])


def variant_builds(variant: str, targets: list[str], root: Path, common: list[str]) -> tuple[list[Build], list[Build]]:
    """Each target built cold into one fresh cache (x86 and onnx share the export and quantize stages: the second
    finds them cached, as a user building both would), then every build again (all cached)."""
    cache = root / f"cache-{variant}"
    cold = [build(variant, t, root / "dist", cache, common) for t in targets]
    warm = [build(variant, t, root / "dist-again", cache, common) for t in targets]
    return cold, warm
