"""Real OpenSSH servers on 127.0.0.1 standing in for boards (generated host and user keys, a free high port)."""
from __future__ import annotations

import getpass
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import free_port, wait_for_port


def start(d: Path) -> dict:
    """An sshd serving from directory `d`: {"url", "dir", "port", "user", "proc"}; the caller stops "proc". Boards
    keep their own bench history in d/board-history.jsonl."""
    exe = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(exe).exists():
        pytest.skip("sshd is not installed here: run `sudo bash scripts/test_system.sh` once (.ci/run does)")
    d.mkdir(parents=True, exist_ok=True)
    for key in ("host_key", "user_key", "stranger_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    shutil.copy(d / "user_key.pub", d / "authorized_keys")
    (d / "authorized_keys").chmod(0o600)
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PidFile {d / 'sshd.pid'}\nPermitRootLogin prohibit-password\nLogLevel ERROR\n"
        f"SetEnv EDGEKIT_HISTORY={d / 'board-history.jsonl'}\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    proc = subprocess.Popen([exe, "-D", "-e", "-f", str(d / "sshd_config")], stderr=open(d / "sshd.log", "w"))
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    for name, key in (("ssh_config", "user_key"), ("stranger_config", "stranger_key")):
        (d / name).write_text(f"Host *\n  IdentityFile {d / key}\n  IdentitiesOnly yes\n"
                              f"  UserKnownHostsFile {d / 'known_hosts'}\n  StrictHostKeyChecking yes\n")
    if not wait_for_port(port):
        proc.kill()
        pytest.fail(f"sshd did not start: {(d / 'sshd.log').read_text()}")
    return {"url": f"ssh://{getpass.getuser()}@127.0.0.1:{port}", "dir": d, "port": port,
            "user": getpass.getuser(), "proc": proc}


def stop(board: dict) -> None:
    board["proc"].terminate()
    board["proc"].wait(timeout=10)
