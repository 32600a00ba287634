"""`edgekit bench BUNDLE --fleet FILE.toml` / repeated --device: three "boards" measured at once. Two OpenSSH servers
on loopback (one runs this machine's edgekit, the other the emulated arm64 Raspberry Pi 4 of test_arm64.py) and one
address that accepts connections and never answers."""
import json
import socket
import sys
import time
from pathlib import Path

import pytest

from edgekit.device import fleet
from edgekit.errors import UsageError

from . import sshboard
from .conftest import run_cli
from .test_arm64 import BOARDS, GOLDEN, ROOT, _bundle_wheel, _need

BENCH = ["--runs", "1", "--warmup", "0", "--threads", "1", "--golden-limit", GOLDEN]


def test_fleet_file_is_checked_and_tags_pick_boards(tmp_path):
    f = tmp_path / "fleet.toml"
    f.write_text('[[board]]\nname = "pi5-lab"\nurl = "ssh://pi@10.0.0.21"\ntags = ["pi5", "camera"]\n\n'
                 '[[board]]\nurl = "ssh://10.0.0.22:2222"\ntags = ["pi4"]\n')
    got = fleet.boards(["ssh://edge@10.0.0.30"], f, [])
    assert [b.name for b in got] == ["10.0.0.30", "pi5-lab", "10.0.0.22:2222"]
    assert [b.name for b in fleet.boards([], f, ["camera"])] == ["pi5-lab"]
    assert [b.name for b in fleet.boards(["ssh://a", "ssh://b@a"], None, [])] == ["a", "a#2"]
    for text, says in (("[[board]]\nname = 'x'\n", "url ="), ("[[board]]\nurl = 'ssh://a'\nport = 22\n", "port"),
                       ("board = 3\n", "no boards"), ("[[board]\n", "not valid TOML"),
                       ("[[board]]\nurl = 'ssh://a'\ntags = 'pi4'\n", "tags is a list"),
                       ("[[board]]\nurl = 'ssh://a'\nedgekit = 3\n", "edgekit is a string")):
        f.write_text(text)
        with pytest.raises(UsageError, match=says):
            fleet.boards([], f, [])
    f.write_text('[[board]]\nurl = "http://a"\n')
    with pytest.raises(UsageError, match=r"fleet.toml, board 1: .*expected ssh://"):
        fleet.boards([], f, [])
    f.write_text('[[board]]\nurl = "ssh://a"\ntags = ["pi4"]\n')
    with pytest.raises(UsageError, match="no board of the fleet has the tag"):
        fleet.boards([], f, ["pi5"])


def test_board_command_in_the_remote_home_is_expanded_there():
    import subprocess

    from edgekit.device.remote import _command

    for given, want in (("~/edgekit-venv/bin/edgekit", "/home/pi/edgekit-venv/bin/edgekit"),
                        ("/opt/edge kit/edgekit", None), ("/usr/bin/edgekit", "/usr/bin/edgekit")):
        cmd = _command(given)
        if want is None:  # a command line with spaces is the user's own shell text
            assert cmd == given
            continue
        got = subprocess.run(["sh", "-c", f"echo {cmd}"], capture_output=True, text=True,
                             env={"HOME": "/home/pi", "PATH": "/usr/bin:/bin"}).stdout.strip()
        assert got == want, (given, cmd, got)


@pytest.fixture()
def silent_address():
    """127.0.0.1:PORT accepts a TCP connection (the kernel's backlog) and never says a word: a board that hangs."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield f"ssh://root@127.0.0.1:{s.getsockname()[1]}"
    s.close()


@pytest.fixture()
def two_boards(tmp_path):
    boards = [sshboard.start(tmp_path / "x86-board"), sshboard.start(tmp_path / "pi4-board")]
    yield boards
    for b in boards:
        sshboard.stop(b)


def test_fleet_of_three_boards_reports_two_and_one_failure(two_boards, silent_address, onnx_bundle, tmp_path):
    _need("site")
    bundle = onnx_bundle
    x86, pi4 = two_boards
    # the emulated Pi 4's edgekit: its python under qemu with the bundle's wheel and the board's runtime
    wheel = _bundle_wheel(bundle, tmp_path / "wheel")
    root, cpu = BOARDS["pi4"][:2]
    arm = tmp_path / "arm-edgekit"
    arm.write_text(f"#!/bin/sh\nexport QEMU_CPU={cpu} PYTHONPATH={ROOT / 'opt' / 'site'}:{wheel}\n"
                   f"exec qemu-aarch64-static -L {root} {root / 'usr/bin/python3'} -m edgekit.cli \"$@\"\n")
    arm.chmod(0o755)
    here = tmp_path / "x86-edgekit"  # the other board runs this machine's edgekit
    here.write_text(f"#!/bin/sh\nexec {sys.executable} -m edgekit.cli \"$@\"\n")
    here.chmod(0o755)
    ssh_config = tmp_path / "ssh_config"  # one config for all three: each board's key, both known_hosts files
    ssh_config.write_text("Host *\n" + "".join(f"  IdentityFile {b['dir'] / 'user_key'}\n" for b in two_boards)
                          + "  UserKnownHostsFile " + " ".join(str(b["dir"] / "known_hosts") for b in two_boards)
                          + "\n  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n")
    fleet_file = tmp_path / "fleet.toml"
    fleet_file.write_text(
        f'[[board]]\nname = "edge-x86"\nurl = "{x86["url"]}"\ntags = ["lab"]\nedgekit = "{here}"\n'
        f'remote_dir = "{tmp_path / "x86-disk"}"\n\n'  # two "boards" on one disk: each its own place
        f'[[board]]\nname = "pi4-emulated"\nurl = "{pi4["url"]}"\ntags = ["lab", "pi4"]\nedgekit = "{arm}"\n'
        f'remote_dir = "{tmp_path / "pi4-disk"}"\n\n'
        f'[[board]]\nname = "pi-gone"\nurl = "{silent_address}"\ntags = ["lab"]\n')
    history = tmp_path / "history.jsonl"
    t = time.perf_counter()
    r = run_cli("bench", str(bundle), "--fleet", str(fleet_file), "--tag", "lab", "--ssh-config", str(ssh_config),
                "--remote-dir", str(tmp_path / "remote"), *BENCH, "--history", str(history),
                "--report-dir", str(tmp_path / "fleet"), "--json", str(tmp_path / "fleet.json"), "--parallel", "3")
    took = time.perf_counter() - t
    assert r.returncode == 2, r.stderr[-3000:]
    doc = json.loads((tmp_path / "fleet.json").read_text())
    rows = {row["board"]: row for row in doc["rows"]}
    assert list(rows) == ["edge-x86", "pi4-emulated", "pi-gone"]
    assert rows["edge-x86"]["ok"] and rows["pi4-emulated"]["ok"] and not rows["pi-gone"]["ok"]
    assert "ssh to" in rows["pi-gone"]["error"] and rows["pi-gone"]["seconds"] < 40
    assert rows["pi4-emulated"]["model"].startswith("Raspberry Pi 4") and rows["pi4-emulated"]["int8_features"] == []
    assert rows["edge-x86"]["int8_features"]  # this machine has avx2 at least
    for row in (rows["edge-x86"], rows["pi4-emulated"]):
        assert row["int8_p50_ms"] > 0 and row["fp32_p50_ms"] > 0 and row["verdict"]
    # progress came per board, with its name, while the others ran
    assert "[pi4-emulated] " in r.stderr and "[pi-gone] FAILED" in r.stderr and "[edge-x86] done" in r.stderr
    # the boards ran at once: the whole fleet took less than its boards one after the other (the hanging one
    # included), whichever finished first
    assert took < sum(row["seconds"] for row in rows.values()), (took, [row["seconds"] for row in rows.values()])
    assert r.stderr.strip().splitlines()[-1].startswith("error: 1 of 3 boards failed: pi-gone: ssh to")
    runs = [json.loads(line) for line in history.read_text().splitlines()]
    assert sorted(run["board"]["name"] for run in runs) == ["edge-x86", "pi4-emulated"]
    out = {p.suffix for p in (tmp_path / "fleet").iterdir()}
    assert out == {".json", ".md", ".png"}
    md = (tmp_path / "fleet" / f"fleet-{bundle.name}-lab.md").read_text()  # --tag lab: a table of its own
    assert "| pi-gone | failed: ssh to" in md and "| edge-x86 |" in md
    assert "edge-x86" in r.stdout and "2 of 3 boards measured" in r.stdout
    assert took < 900
    # the fleet's JSON carries the boards' reports: publishing them with the bundle takes it as it is
    r = run_cli("publish", str(bundle), "--to", str(tmp_path / "shelf"), "--bench",
                str(tmp_path / "fleet" / f"fleet-{bundle.name}-lab.json"), check=True)
    assert "attached 2 bench report(s)" in r.stdout


@pytest.fixture()
def onnx_bundle(tiny_bundles) -> Path:
    """A bundle both kinds of board run: the onnx target (onnxruntime is on either), the tiny one (tests/tiny.py): a
    fleet's reports are the point, and the emulated Pi runs it in a fraction of lite0's time."""
    return tiny_bundles["onnx"]
