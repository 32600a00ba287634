"""Run `edgekit bench` on a remote board over ssh: copy the bundle, run the harness there, bring the report back.

Uses the system `ssh` client, so the user's ssh config, keys, agent and known_hosts apply as they do for any ssh
login. BatchMode (never prompt), a connect timeout and keep-alives bound every failure in time: an unreachable host,
a refused key or a board that stops answering ends with the ssh client's own message.
"""
from __future__ import annotations

import io
import shlex
import subprocess
import sys
import tarfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from edgekit.errors import RemoteError

CONNECT_TIMEOUT_S = 10
ALIVE_INTERVAL_S = 5
ALIVE_COUNT = 3  # no answer for 15 s: the board is gone
REMOTE_ROOT = ".cache/edgekit/remote-bundles"  # relative paths are under the remote user's home



@dataclass(frozen=True)
class Device:
    host: str
    user: str | None
    port: int | None
    ssh_config: str | None = None

    @property
    def url(self) -> str:
        return f"ssh://{self.user + '@' if self.user else ''}{self.host}{':' + str(self.port) if self.port else ''}"

    def ssh_args(self) -> list[str]:
        args = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
                "-o", f"ServerAliveInterval={ALIVE_INTERVAL_S}", "-o", f"ServerAliveCountMax={ALIVE_COUNT}"]
        if self.ssh_config:
            args += ["-F", self.ssh_config]
        if self.port:
            args += ["-p", str(self.port)]
        return args + [f"{self.user}@{self.host}" if self.user else self.host]


def parse_device(spec: str, ssh_config: str | None = None) -> Device:
    u = urlparse(spec)
    if u.scheme != "ssh" or not u.hostname:
        raise RemoteError(f"--device {spec!r}: expected ssh://[user@]host[:port]")
    try:
        port = u.port
    except ValueError:
        raise RemoteError(f"--device {spec!r}: the port is not a number") from None
    return Device(u.hostname, u.username, port, ssh_config)


def _ssh(dev: Device, command: str, stdin: bytes | None = None, stream: bool | Callable[[str], None] = False,
         timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run `command` on the board. With stream=True the board's stderr (progress) goes to ours as it comes; with a
    callable, each of its lines goes to it (a fleet run names the board in front)."""
    try:
        if callable(stream):
            return _ssh_lines(dev, command, stream)
        return subprocess.run(dev.ssh_args() + [command], input=stdin, stdout=subprocess.PIPE,
                              stderr=sys.stderr if stream else subprocess.PIPE, timeout=timeout)
    except FileNotFoundError:
        raise RemoteError("the ssh client is not installed on this machine (apt-get install openssh-client)") \
            from None
    except subprocess.TimeoutExpired:
        raise RemoteError(f"{dev.url} did not finish '{command.split()[0]}' within {timeout:.0f} s") from None


def _ssh_lines(dev: Device, command: str, on_line: Callable[[str], None]) -> subprocess.CompletedProcess:
    """`command` with its stderr read line by line (kept, for the error message, and passed on)."""
    p = subprocess.Popen(dev.ssh_args() + [command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(p.stdout.read()), daemon=True)
    reader.start()
    kept = []
    for raw in iter(p.stderr.readline, b""):
        line = raw.decode(errors="replace").rstrip()
        kept = (kept + [line])[-20:]
        if line.strip():
            on_line(line)
    rc = p.wait()
    reader.join()
    return subprocess.CompletedProcess(p.args, rc, b"".join(out), "\n".join(kept).encode())


def _last_line(b: bytes | None) -> str:
    lines = [ln.strip() for ln in (b or b"").decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def _check(dev: Device, r: subprocess.CompletedProcess, what: str) -> None:
    if r.returncode == 255:  # ssh's own failure: connection, authentication, host key, dropped link
        raise RemoteError(f"ssh to {dev.url} failed while {what}: {_last_line(r.stderr)}")
    if r.returncode != 0:
        raise RemoteError(f"the board {dev.url} failed while {what} (exit {r.returncode}): {_last_line(r.stderr)}")


def _tar(bundle: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(bundle.iterdir()):
            if p.is_file():
                tar.add(p, arcname=p.name)
    return buf.getvalue()


def bench(dev: Device, bundle: Path, manifest_sha256: str, bench_args: list[str], remote_edgekit: str,
          remote_root: str = REMOTE_ROOT, on_line: Callable[[str], None] | None = None) -> bytes:
    """Copy `bundle` to the board, run `edgekit bench` there and return its JSON report (bytes)."""
    exe = _command(remote_edgekit)
    r = _ssh(dev, f"{exe} --version", timeout=CONNECT_TIMEOUT_S * 3)
    if r.returncode == 127:
        raise RemoteError(f"edgekit is not installed on {dev.url} ({_last_line(r.stderr)}): install it there "
                          f"from the bundle's wheel as {bundle.name}/README.md says, or pass --remote-edgekit PATH")
    _check(dev, r, "checking for edgekit")
    # content-addressed remote directory: a bundle already copied is reused, a changed one gets a fresh place
    remote = f"{remote_root.rstrip('/')}/{bundle.name}-{manifest_sha256[:16]}"
    q = shlex.quote(remote)
    tmp = shlex.quote(f"{remote}.tmp-{uuid.uuid4().hex[:12]}")  # this run's own: never another run's half copy
    r = _ssh(dev, f"mkdir -p {tmp} && tar -x -C {tmp} && rm -rf {q} && mv {tmp} {q}", stdin=_tar(bundle))
    _check(dev, r, "copying the bundle")
    report = f"{remote}/../{bundle.name}-bench-{uuid.uuid4().hex[:12]}.json"  # one per run: boards may share a disk
    args = " ".join(shlex.quote(a) for a in bench_args)
    r = _ssh(dev, f"{exe} bench {q} {args} --json {shlex.quote(report)}", stream=on_line or True)
    _check(dev, r, "running edgekit bench")
    r = _ssh(dev, f"cat {shlex.quote(report)} && rm -f {shlex.quote(report)}")
    _check(dev, r, "reading the report")
    return r.stdout


def _command(remote_edgekit: str) -> str:
    """The board's edgekit as its shell should see it: a command line with spaces as given, a `~/` path with the
    remote home expanded (quoting would keep the shell from it), anything else quoted."""
    if " " in remote_edgekit:
        return remote_edgekit
    if remote_edgekit.startswith("~/"):
        return '"$HOME"/' + shlex.quote(remote_edgekit[2:])
    return shlex.quote(remote_edgekit)
