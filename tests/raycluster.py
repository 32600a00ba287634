"""A real two-node Ray cluster for the tests, inside network and PID namespaces of its own.

`ray start` binds to the machine's interface address whatever --node-ip-address says (ray-project/ray#26293), and
tests may talk only to loopback: so the head, the second node and every driver run in a network namespace with only
`lo` up (unshare -n; the drivers join it with nsenter). The namespace's PID 1 is killed with the unshare process
(--kill-child), and with it every Ray process the cluster started: stopped by our own process ids, even when a test
fails half-way. Needs root (CI runs as root), unshare, nsenter and ip."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PORT = 6379  # the namespace is ours alone: no other cluster can hold the port
NODE_MEMORY = 6 * 2**30  # what each node offers tasks (a lite1 build declares 2.6 GB)
OBJECT_STORE = 300 * 2**20

SCRIPT = """
set -e
ip link set lo up
export RAY_USAGE_STATS_ENABLED=0
ray() {{ "{bin}/ray" "$@"; }}
EDGEKIT_CACHE_DIR={root}/cache-head ray start --head --node-ip-address 127.0.0.1 --port {port} --num-cpus 1 \\
    --memory {memory} --object-store-memory {store} --disable-usage-stats --include-dashboard false \\
    --temp-dir {root}/ray >{root}/head.log 2>&1
EDGEKIT_CACHE_DIR={root}/cache-node2 ray start --address 127.0.0.1:{port} --node-ip-address 127.0.0.1 \\
    --num-cpus 1 --memory {memory} --object-store-memory {store} --disable-usage-stats >{root}/node2.log 2>&1
touch {root}/ready
exec sleep infinity
"""


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    for tool in ("unshare", "nsenter", "ip"):
        if not shutil.which(tool):
            return f"{tool} is not installed (scripts/test_system.sh installs it)"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "ray is not installed (pip install '.[cluster]')"
    return None


@dataclass
class Cluster:
    root: Path
    proc: subprocess.Popen
    inner: int  # the namespace's PID 1, as the host sees it

    @property
    def address(self) -> str:
        return f"127.0.0.1:{PORT}"

    @property
    def netns(self) -> str:
        return f"/proc/{self.inner}/ns/net"

    def inside(self, *cmd: str) -> list[str]:
        """`cmd` run in the cluster's network namespace."""
        return ["nsenter", f"--net={self.netns}", "--", *cmd]

    def edgekit(self, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.inside(sys.executable, "-m", "edgekit.cli", *args),
                                env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}, **kw)

    def processes(self, title_prefix: str) -> list[int]:
        """Host pids of the processes in the cluster's namespace whose command line starts with `title_prefix`
        (Ray titles a worker by the task it runs: ray::<task name>)."""
        return [pid for pid, _ in self._titled(title_prefix)]

    def titles(self, title_prefix: str) -> list[str]:
        return [t for _, t in self._titled(title_prefix)]

    def _titled(self, title_prefix: str) -> list[tuple[int, str]]:
        ns = os.readlink(self.netns)
        out = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                if os.readlink(p / "ns" / "net") != ns:
                    continue
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith(title_prefix):
                out.append((int(p.name), cmd.strip()))
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # --kill-child: the namespace's init, and all in it, go too
            self.proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{self.inner}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)


def start(timeout_s: float = 90) -> Cluster:
    # a short path: Ray's unix sockets live under --temp-dir and their names are limited to 107 bytes
    root = Path(tempfile.mkdtemp(prefix="ekray-", dir="/tmp"))
    script = SCRIPT.format(bin=Path(sys.executable).parent, root=root, port=PORT, memory=NODE_MEMORY,
                           store=OBJECT_STORE)
    proc = subprocess.Popen(["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
                             "bash", "-c", script], stdout=subprocess.DEVNULL, stderr=open(root / "unshare.log", "w"))
    inner = None
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("the Ray cluster did not start: " + " | ".join(
                    (root / f).read_text()[-600:] for f in ("unshare.log", "head.log", "node2.log")
                    if (root / f).is_file()))
            if inner is None:
                kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
                got = kids.read_text().split() if kids.exists() else []
                inner = int(got[0]) if got else None
            if inner and (root / "ready").exists():
                return Cluster(root, proc, inner)
            time.sleep(0.2)
        raise RuntimeError(f"the Ray cluster was not up within {timeout_s:.0f} s")
    except BaseException:
        Cluster(root, proc, inner or 0).stop()
        raise
