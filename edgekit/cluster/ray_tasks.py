"""`edgekit build --ray [ADDRESS]`: each pair a Ray task on a running cluster.

A task declares what a build needs (resources.py: one CPU, the variant's measured peak memory), so Ray never puts
more builds on a node than it holds. The task builds in a temporary directory of its node, with that node's stage
cache (or the shared one --cache-dir names), and returns the bundle's files; the driver writes them to a temporary
directory in --out, verifies every checksum and renames it into place. A worker that dies (killed, out of memory,
its node lost) has its task retried by Ray up to --retries times, then that pair fails alone."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from edgekit.builder.options import BuildOptions
from edgekit.cluster.pair import Events, Pair, PairResult, build_pair
from edgekit.cluster.resources import CPUS_PER_PAIR, build_memory_bytes
from edgekit.core import bundle as manifest
from edgekit.core.targets import get_target
from edgekit.errors import BuildError, ClusterError, ManifestError, PublishError, first_line, os_error_line
from edgekit.publish.bundles import safe_files

CONNECT_TIMEOUT_S = 10
WAIT_NOTE_S = 30  # a line saying what is still running, this often


def _ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray: pip install 'edgekit[cluster]' (in a checkout: pip install '.[cluster]')")\
            from None
    return ray


def connect(address: str):
    """Join the running cluster at `address` ('auto': $RAY_ADDRESS, else the cluster `ray start` left on this
    machine). edgekit never starts a cluster of its own: where Ray binds and what it reports is the operator's."""
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # not Ray's core warnings (e.g. no route to 8.8.8.8)
    ray = _ray()
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS") or "auto"
    if address != "auto":
        _probe(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        if address == "auto":  # Ray's own text names its CLI's flags, not ours
            raise ClusterError("no Ray cluster to join: RAY_ADDRESS is not set and no cluster was started on this "
                               "machine; start one with `ray start --head` or pass --ray HEAD:PORT") from None
        raise ClusterError(f"no Ray cluster to join at {address} ({str(e).strip().splitlines()[0][:160]}); start one "
                           "with `ray start --head` or check HEAD:PORT") from None
    return ray


def _probe(address: str) -> None:
    """A head that is not there fails here, in seconds: ray.init would retry it for minutes."""
    rest = address.removeprefix("ray://")  # Ray Client's scheme; any other is not a Ray address
    host, sep, port = rest.rpartition(":")
    if "://" in rest or "/" in rest or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"--ray {address!r}: expected HEAD:PORT (e.g. 10.0.0.5:6379) or 'auto'")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ClusterError(f"no Ray head answers at {address} ({e.strerror or e}): start one there with "
                           "`ray start --head`, or check HEAD:PORT") from None


def package_digest() -> str:
    """Every source file of the installed edgekit, the CLI's too: the wheel a bundle carries is made of them all."""
    import edgekit
    from edgekit.builder.cache import source_digest

    return source_digest(Path(edgekit.__file__).parent, outside=())


def build_pair_task(pair: Pair, options: dict, driver_code: str) -> dict:
    """On a Ray worker: build `pair` in a temporary directory and return its files (or its error line)."""
    import ray

    where = f"{ray.util.get_node_ip_address()} ({socket.gethostname()}, node {ray.get_runtime_context().get_node_id()[:8]})"
    if package_digest() != driver_code:
        return {"where": where, "seconds": 0.0, "error": f"the node at {where} runs other edgekit code than the "
                "driver: install the same edgekit checkout on every node"}
    tmp = Path(tempfile.mkdtemp(prefix="edgekit-ray-"))
    try:
        r = build_pair(pair, BuildOptions(**options), tmp)
        if not r.ok:
            return {"where": where, "seconds": r.seconds, "error": r.error}
        files = {f: (r.path / f).read_bytes() for f in [*r.manifest["files"], manifest.MANIFEST]}
        return {"where": where, "seconds": r.seconds, "files": files}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _land(files: dict[str, bytes], out_dir: Path, name: str, force: bool = False) -> Path:
    """The bundle's files written beside its final place, verified against its manifest, renamed into place."""
    tmp = Path(tempfile.mkdtemp(prefix=manifest.temp_prefix(), dir=out_dir))
    try:
        safe_files(files)  # the rule every store applies: plain names inside the bundle
        for f, data in files.items():
            (tmp / f).write_bytes(data)
        m = manifest.read(tmp)  # every checksum
        os.chmod(tmp, 0o755)
        final = out_dir / name
        if not force:
            manifest.refuse_other_model(final, m["weights"]["sha256"], m["class_names"])
        manifest.replace_dir(tmp, final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _nodes(ray) -> list[tuple[float, float]]:
    """(CPUs, memory bytes) each live node offers tasks."""
    return [(n["Resources"].get("CPU", 0), n["Resources"].get("memory", 0)) for n in ray.nodes() if n.get("Alive")]


def run(todo: list[Pair], options: BuildOptions, out_dir: Path, address: str, retries: int,
        events: Events = Events()) -> list[PairResult]:
    # Ray prints what its nodes report (a worker that died...) on stdout, where --json's document goes: not there
    with contextlib.redirect_stdout(sys.stderr):
        return _run(todo, options, out_dir, address, retries, events, package_digest())


def _run(todo, options, out_dir, address, retries, events, driver_code) -> list[PairResult]:
    ray = connect(address)
    try:
        nodes = _nodes(ray)
        events.note(f"Ray cluster at {address}: {len(nodes)} node(s), {sum(c for c, _ in nodes):g} CPUs")
        task = ray.remote(build_pair_task)
        results: dict[Pair, PairResult] = {}
        pending: dict = {}
        started: dict[Pair, float] = {}
        for p in todo:
            need = build_memory_bytes(p.variant, get_target(p.target).route)
            if not any(c >= CPUS_PER_PAIR and m >= need for c, m in nodes):  # Ray would queue it forever
                most = max(nodes, key=lambda n: (n[1], n[0]), default=(0, 0))
                results[p] = PairResult(p, 0.0, error=f"needs a node with {CPUS_PER_PAIR} CPU and "
                                        f"{need / 2**30:.1f} GiB free for tasks; the cluster's largest offers "
                                        f"{most[0]:g} CPU and {most[1] / 2**30:.1f} GiB")
                events.finished(results[p])
                continue
            ref = task.options(num_cpus=CPUS_PER_PAIR, memory=need, max_retries=retries,
                               name=f"edgekit build {p.name}").remote(p, options.to_dict(), driver_code)
            pending[ref] = p
            started[p] = time.perf_counter()
            events.started(p, "queued on the cluster")
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_NOTE_S)
                if not done:
                    events.note("still building: " + ", ".join(
                        f"{p.name} ({time.perf_counter() - started[p]:.0f} s)" for p in pending.values()))
                    continue
                ref = done[0]
                p = pending.pop(ref)
                results[p] = _collect(ray, ref, p, out_dir, time.perf_counter() - started[p], retries, options.force)
                events.finished(results[p])
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return [results[p] for p in todo]
    finally:
        ray.shutdown()


def _collect(ray, ref, p: Pair, out_dir: Path, wall: float, retries: int, force: bool = False) -> PairResult:
    try:
        got = ray.get(ref)
    except ray.exceptions.RayTaskError as e:  # a bug in the task: its first line, the other pairs go on
        cause = e.cause if getattr(e, "cause", None) is not None else e
        return PairResult(p, wall, error=f"the build raised {type(cause).__name__}: {first_line(cause)[:200]}",
                          where="ray")
    except ray.exceptions.RayError as e:  # the worker or its node died, more often than --retries allows
        return PairResult(p, wall, error=f"the Ray worker was lost {retries + 1} time(s) ({type(e).__name__}: "
                                         f"{first_line(e)[:160]}); pass --retries to allow more", where="ray")
    took = got["seconds"]  # the build's own time, not the wait for a free node
    if "files" not in got:
        return PairResult(p, took, error=got["error"], where=got["where"])
    try:
        path = _land(got["files"], out_dir, p.name, force)
    except BuildError as e:  # a bundle of other weights or classes is there: the worker could not see it
        return PairResult(p, took, error=str(e), where=got["where"])
    except (ManifestError, PublishError) as e:
        return PairResult(p, took, error=f"the bundle that came back is damaged: {e}", where=got["where"])
    except OSError as e:  # --out full or unwritable: this pair's failure, the others may still land
        return PairResult(p, took, error=f"cannot write {p.name} to {out_dir}: {os_error_line(e, {'--out': out_dir})}",
                          where=got["where"])
    return PairResult(p, took, manifest.read(path, verify=False), where=got["where"], path=path)
