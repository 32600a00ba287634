"""`edgekit bench BUNDLE --device ssh://a --device ssh://b` or `--fleet FILE.toml`: one bundle measured on many boards
at once (at most --parallel at a time), each board's progress streamed with its name in front, a board that cannot
be reached or stops answering marked failed with ssh's or the board's own message while the others go on, and one
table of the fleet written as text, JSON, Markdown and a PNG.

A fleet file names the boards:

    [[board]]
    name = "pi5-lab"                  # a name for the table and the progress lines
    url = "ssh://pi@10.0.0.21"        # what --device takes
    tags = ["pi5", "camera"]          # optional; --tag picks boards by them
    edgekit = "~/edgekit-venv/bin/edgekit"   # optional: the edgekit command on that board
    remote_dir = "/data/edgekit"      # optional: where bundles are copied there
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import tomllib

from edgekit.core.bundle import MANIFEST, file_sha256, read, write_atomic, write_json
from edgekit.core.intervals import cell
from edgekit.device import compare, remote
from edgekit.device.matrix import save_png
from edgekit.errors import DeviceError, EdgekitError, RemoteError, UsageError

PARALLEL = 4  # boards measured at once unless --parallel says otherwise


@dataclass(frozen=True)
class Board:
    name: str
    url: str
    tags: tuple[str, ...] = ()
    edgekit: str | None = None  # the edgekit command on the board; None: the run's --remote-edgekit
    remote_dir: str | None = None  # where bundles are copied on the board; None: the run's --remote-dir


@dataclass
class BoardResult:
    board: Board
    seconds: float
    report: dict | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.report is not None


def load(path: Path) -> list[Board]:
    """The boards of a fleet file; one line naming the file and the entry for anything wrong in it."""
    try:
        doc = tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise UsageError(f"--fleet {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"--fleet {path} is not valid TOML ({e})") from None
    entries = doc.get("board")
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"--fleet {path}: no boards; list them as [[board]] tables with a name and an ssh url")
    boards = []
    for i, e in enumerate(entries, 1):
        where = f"--fleet {path}, board {i}"
        if not isinstance(e, dict) or not isinstance(e.get("url"), str):
            raise UsageError(f"{where}: give it url = \"ssh://[user@]host[:port]\"")
        unknown = set(e) - {"name", "url", "tags", "edgekit", "remote_dir"}
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (a board has name, url, tags, "
                             "edgekit, remote_dir)")
        tags = e.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise UsageError(f"{where}: tags is a list of strings")
        for key in ("name", "edgekit", "remote_dir"):
            if key in e and not isinstance(e[key], str):
                raise UsageError(f"{where}: {key} is a string")
        try:
            remote.parse_device(e["url"])
        except RemoteError as err:
            raise UsageError(f"{where}: {err}") from None
        boards.append(Board(e.get("name") or _name_of(e["url"]), e["url"], tuple(tags), e.get("edgekit"),
                            e.get("remote_dir")))
    return boards


def _name_of(url: str) -> str:
    return url.removeprefix("ssh://").split("@")[-1]


def boards(devices: list[str], fleet: Path | None, tags: list[str]) -> list[Board]:
    """The boards of --device (each its host as its name) and --fleet, those with every --tag; names unique."""
    out = [Board(_name_of(d), d) for d in devices] + (load(fleet) if fleet else [])
    if tags:
        out = [b for b in out if set(tags) <= set(b.tags)]
        if not out:
            raise UsageError(f"no board of the fleet has the tag(s) {', '.join(tags)}")
    seen: dict[str, int] = {}
    named = []
    for b in out:  # two boards behind one host name (ports) keep apart in the table
        seen[b.name] = seen.get(b.name, 0) + 1
        named.append(b if seen[b.name] == 1 else dataclasses.replace(b, name=f"{b.name}#{seen[b.name]}"))
    for b in named:
        remote.parse_device(b.url)  # a malformed URL is the user's to fix before any board is tried
    return named


def run(fleet: list[Board], bundle: Path, bench_args: list[str], parallel: int, ssh_config: str | None,
        remote_edgekit: str, remote_dir: str, say: Callable[[str], None]) -> list[BoardResult]:
    """Bench `bundle` on every board, at most `parallel` at once; results in the fleet's order."""
    read(bundle)  # verify before shipping it anywhere
    sha = file_sha256(bundle / MANIFEST)
    lock = threading.Lock()

    def line(board: Board, text: str) -> None:
        with lock:
            say(f"[{board.name}] {text}")

    def one(board: Board) -> BoardResult:
        t = time.perf_counter()
        line(board, f"bench {bundle.name} on {board.url}")
        try:
            dev = remote.parse_device(board.url, ssh_config)
            raw = remote.bench(dev, bundle, sha, bench_args, board.edgekit or remote_edgekit,
                               board.remote_dir or remote_dir, on_line=lambda s: line(board, s))
            try:
                report = json.loads(raw)
            except json.JSONDecodeError:
                raise RemoteError(f"{board.url} returned a report that is not JSON") from None
        except EdgekitError as e:
            took = time.perf_counter() - t
            line(board, f"FAILED after {took:.0f} s: {e}")
            return BoardResult(board, took, error=str(e))
        report = {**report, "remote": dev.url, "board": {"name": board.name, "tags": list(board.tags)}}
        took = time.perf_counter() - t
        line(board, f"done in {took:.0f} s")
        return BoardResult(board, took, report)

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(fleet)))) as pool:
        futures = [pool.submit(one, b) for b in fleet]
        for _ in as_completed(futures):
            pass
    return [f.result() for f in futures]


def row(r: BoardResult) -> dict:
    """The fleet table's row of one board: its figures, or why it has none."""
    base = {"board": r.board.name, "url": r.board.url, "tags": list(r.board.tags), "ok": r.ok,
            "seconds": round(r.seconds, 1), "error": r.error}
    if not r.ok:
        return base
    rep = r.report
    fp = rep.get("fingerprint") or {}
    v = rep.get("verdict") or {}
    s = compare.summary(rep)
    return {**base, **{k: s[k] for k in ("bundle", "runtime", "threads", "int8_p50_ms", "fp32_p50_ms", "speedup",
                                         "agreement", "agreement_ci95", "max_temperature_c", "throttled",
                                         "comparable")},
            "model": compare.device_name(rep), "cpu": fp.get("cpu") or rep["device"].get("cpu"),
            "int8_features": sorted(k for k, on in (fp.get("int8_features") or {}).items() if on),
            "int8_pays_off": s["int8_pays_off"], "verdict": v.get("line", "").removeprefix("verdict: ")}


@dataclass
class Table:
    title: str
    rows: list[dict] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"# {self.title}", "", "| board | model | INT8 features | INT8 p50 | FP32 p50 | speed-up | "
                 "agreement [95 %] | max temp | throttled | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            if not r["ok"]:
                lines.append(f"| {r['board']} | failed: {r['error']} | | | | | | | | |")
                continue
            lines.append(f"| {r['board']} | {r['model']} | {', '.join(r['int8_features']) or 'none'} | "
                         f"{r['int8_p50_ms']:.2f} ms | {r['fp32_p50_ms']:.2f} ms | {r['speedup']:.2f}x | "
                         f"{cell(r['agreement'], r.get('agreement_ci95')) or '—'} | "
                         f"{_temp(r['max_temperature_c']) or '—'} | "
                         f"{r['throttled'] or '—'} | {r['verdict']} |")
        return "\n".join(lines) + "\n"

    def chart(self, path: Path) -> None:
        """p50 INT8 and FP32 per board (failed boards named, without bars)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.5, 1.4 + 0.55 * len(self.rows)), dpi=120)
        ys = range(len(self.rows))
        for prec, dy in (("fp32", 0.2), ("int8", -0.2)):
            ax.barh([y + dy for y in ys], [r.get(f"{prec}_p50_ms") or 0 for r in self.rows], height=0.4,
                    label=prec.upper())
        for y, r in zip(ys, self.rows):
            ax.annotate(f"{r['speedup']:.2f}x" if r["ok"] else "failed", (r.get("int8_p50_ms") or 0, y - 0.2),
                        xytext=(3, -3), textcoords="offset points", fontsize=7)
        ax.set_yticks(list(ys), [f"{r['board']}\n{(r.get('model') or '')[:40]}" for r in self.rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("latency, p50 batch 1 (ms)")
        ax.set_title(self.title, fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        save_png(fig, plt, path)

    def write(self, out_dir: Path, stem: str, reports: list[dict]) -> dict[str, Path]:
        """JSON (the rows and the boards' reports: `publish --bench` takes it), Markdown and, where matplotlib is
        installed, the PNG; each written whole or not at all."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"json": write_json(out_dir / f"{stem}.json", {"title": self.title, "rows": self.rows,
                                                               "reports": reports})}
        paths["markdown"] = write_atomic(out_dir / f"{stem}.md", self.markdown().encode())
        try:
            self.chart(out_dir / f"{stem}.png")
            paths["png"] = out_dir / f"{stem}.png"
        except ImportError:  # a board-side install: the table is all there is
            pass
        return paths


def table(bundle: Path, results: list[BoardResult]) -> Table:
    return Table(f"edgekit bench {bundle.name} on {len(results)} board(s)", [row(r) for r in results])


def _temp(v) -> str:
    return "" if v is None else f"{v:.1f} C"


def failure(results: list[BoardResult]) -> DeviceError | None:
    """The error that ends a fleet run in which some board failed (after the table), or None."""
    bad = [r for r in results if not r.ok]
    if not bad:
        return None
    return DeviceError(f"{len(bad)} of {len(results)} boards failed: "
                       + "; ".join(f"{r.board.name}: {r.error}" for r in bad))
