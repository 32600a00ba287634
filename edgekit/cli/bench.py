"""`edgekit bench` and `edgekit report`: the device side's commands (numpy, Pillow and the runtime only)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import click

from edgekit.cli import render
from edgekit.cli.app import main
from edgekit.cli.progress import Bars
from edgekit.errors import DeviceError, UsageError


def _threads(value: str) -> list[int]:
    try:
        out = [int(t) for t in value.split(",") if t.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise UsageError(f"--threads {value!r}: give thread counts such as 1 or 1,2,4")
    return out


@main.command()
@click.argument("bundle", type=click.Path(file_okay=False), required=False)
@click.option("--images", type=click.Path(file_okay=False), default=None,
              help="Also measure drift on these images (labels from WordNet ids, folders or labels.csv).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use at most this many of --images.")
@click.option("--golden-limit", type=click.IntRange(min=1), default=None,
              help="Use only the first N golden inputs (slow or emulated boards) [default: all].")
@click.option("--threads", default="1,2", show_default=True, help="Thread counts to time, comma-separated.")
@click.option("--runs", default=50, show_default=True, help="Timed runs per precision and thread count.")
@click.option("--warmup", default=5, show_default=True, help="Untimed runs first.")
@click.option("--runtime", default="auto", show_default=True,
              help="auto (the bundle's runtime), openvino, onnxruntime or litert.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), default=None, help="Write the report here.")
@click.option("--history", type=click.Path(dir_okay=False), default=None,
              help="History file to append to [default: $EDGEKIT_HISTORY or ~/.local/share/edgekit/history.jsonl].")
@click.option("--device", "devices", multiple=True,
              help="Run on a remote board: ssh://[user@]host[:port] (--images is then a directory on the board). "
                   "Repeat it for a fleet.")
@click.option("--fleet", "fleet_file", type=click.Path(dir_okay=False), default=None,
              help="A TOML file of boards ([[board]] name, url, tags, edgekit) to measure at once.")
@click.option("--tag", "tags", multiple=True, help="With --fleet: only the boards with this tag (repeatable).")
@click.option("--parallel", default=4, show_default=True, type=click.IntRange(min=1),
              help="Fleet: boards measured at the same time.")
@click.option("--ssh-config", type=click.Path(dir_okay=False), default=None,
              help="ssh config file for --device [default: ssh's own, ~/.ssh/config].")
@click.option("--remote-edgekit", default="edgekit", show_default=True,
              help="The edgekit command on the board.")
@click.option("--remote-dir", default=".cache/edgekit/remote-bundles", show_default=True,
              help="Where bundles are copied on the board (relative: under the remote home).")
@click.option("--variant", "variant_name", default=None,
              help="Matrix mode instead of BUNDLE: lite0..lite4 or 'all'; bundles missing from --out are built.")
@click.option("--target", "target_name", default="x86", show_default=True, help="Matrix mode: target.")
@click.option("--out", "out_dir", default="dist", show_default=True, type=click.Path(file_okay=False),
              help="Matrix mode: where bundles are (and are built).")
@click.option("--calib", default=None, help="Matrix mode: calibration source for bundles it builds.")
@click.option("--num-calib", default=200, show_default=True, help="Matrix mode: calibration images for builds.")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False), help="Matrix mode: stage cache.")
@click.option("--random-weights", is_flag=True,
              help="Matrix mode: include variants with no weights (latency only; their top-1 is meaningless).")
@click.option("--report-dir", default=None, type=click.Path(file_okay=False),
              help="Matrix mode and fleets: where the table goes as JSON, Markdown and PNG [default: OUT/bench, "
                   "or beside the bundle in bench/].")
def bench(bundle, images, limit, golden_limit, threads, runs, warmup, runtime, json_file, history, devices,
          fleet_file, tags, parallel, ssh_config, remote_edgekit, remote_dir, variant_name, target_name, out_dir,
          calib, num_calib, cache_dir, random_weights, report_dir) -> None:
    """Measure a bundle on this device, a remote board or a fleet of boards: latency per thread count, drift
    against FP32 and PyTorch. With --variant instead of BUNDLE: a per-variant table for one target."""
    thread_list = _threads(threads)
    if runs < 1 or warmup < 0:
        raise UsageError("--runs must be at least 1 and --warmup at least 0")
    if bool(bundle) == bool(variant_name):
        raise UsageError("give either a BUNDLE directory or --variant (matrix mode), not both or neither")
    if json_file and not Path(json_file).resolve().parent.is_dir():
        raise UsageError(f"--json {json_file}: its directory does not exist")
    if tags and not fleet_file:
        raise UsageError("--tag picks boards of a --fleet file; give --fleet FILE.toml")
    is_fleet = bool(fleet_file) or len(devices) > 1
    if is_fleet and variant_name:
        raise UsageError("a fleet measures one BUNDLE; matrix mode (--variant) takes at most one --device")
    device = devices[0] if devices and not is_fleet else None
    # what a bench run measures, as the command-line arguments a child bench or a remote board takes
    args = ["--threads", threads, "--runs", str(runs), "--warmup", str(warmup), "--runtime", runtime]
    args += (["--images", images] if images else []) + (["--limit", str(limit)] if limit else [])
    args += ["--golden-limit", str(golden_limit)] if golden_limit else []
    if bundle and is_fleet:
        _bench_fleet(Path(bundle).resolve(), args, devices, fleet_file, tags, parallel, ssh_config, remote_edgekit,
                     remote_dir, history, json_file, report_dir)
        return
    if bundle:
        report = _bench_one(Path(bundle), args, thread_list, runs, warmup, runtime, images, limit, golden_limit,
                            history, device, ssh_config, remote_edgekit, remote_dir)
        if json_file:
            Path(json_file).write_text(json.dumps(report, indent=2, default=str) + "\n")
        click.echo(render.bench_table(report))
        return

    from edgekit.device import matrix

    child_bench = args + (["--history", history] if history else []) \
        + (["--device", device, "--remote-edgekit", remote_edgekit, "--remote-dir", remote_dir] if device else []) \
        + (["--ssh-config", ssh_config] if ssh_config else [])
    child_build = ["--num-calib", str(num_calib)] + (["--calib", calib] if calib else []) \
        + (["--cache-dir", cache_dir] if cache_dir else [])
    result = matrix.run(variant_name, target_name, Path(out_dir), child_build, child_bench, thread_list[0],
                        random_weights, Path(report_dir) if report_dir else Path(out_dir) / "bench", calib)
    if json_file:
        Path(json_file).write_text(json.dumps({"rows": result.rows, "reports": result.reports}, indent=2,
                                              default=str) + "\n")
    click.echo(matrix.markdown(result.rows, result.title))
    click.echo("wrote " + ", ".join(str(p) for p in result.paths.values()), err=True)


def _bench_one(bundle: Path, args: list[str], thread_list, runs, warmup, runtime, images, limit, golden_limit,
               history, device, ssh_config, remote_edgekit, remote_dir) -> dict:
    """One bundle, here or on a remote board; appended to the history."""
    from edgekit.core.bundle import MANIFEST, file_sha256, read
    from edgekit.device import harness, remote
    from edgekit.device import history as history_mod

    if device:
        dev = remote.parse_device(device, ssh_config)
        read(bundle)  # verify before shipping it
        click.echo(f"bench {bundle.name} on {dev.url}", err=True)
        raw = remote.bench(dev, bundle, file_sha256(bundle / MANIFEST), args, remote_edgekit, remote_dir)
        try:
            report = {**json.loads(raw), "remote": dev.url}
        except json.JSONDecodeError:
            raise DeviceError(f"{dev.url} returned a report that is not JSON") from None
    else:
        bars = Bars()
        try:
            report = harness.run(bundle, thread_list, runs, warmup, runtime,
                                 Path(images) if images else None, limit, golden_limit, bars)
            bars.done()
        finally:
            bars.close()
    path = history_mod.append_history(report, Path(history) if history else None)
    click.echo(f"  appended to {path}", err=True)
    return report


def _bench_fleet(bundle: Path, args, devices, fleet_file, tags, parallel, ssh_config, remote_edgekit, remote_dir,
                 history, json_file, report_dir) -> None:
    """Every board of the fleet at once; the fleet table; every board's run in the history."""
    from edgekit.device import fleet
    from edgekit.device import history as history_mod

    boards = fleet.boards(list(devices), Path(fleet_file) if fleet_file else None, list(tags))
    click.echo(f"bench {bundle.name} on {len(boards)} board(s), {min(parallel, len(boards))} at a time", err=True)
    results = fleet.run(boards, bundle, args, parallel, ssh_config, remote_edgekit, remote_dir,
                        lambda line: click.echo(line, err=True))
    reports = [r.report for r in results if r.ok]
    for report in reports:
        path = history_mod.append_history(report, Path(history) if history else None)
    table = fleet.table(bundle, results)
    # a --tag run leaves the whole fleet's table alone
    stem = f"fleet-{bundle.name}" + "".join("-" + re.sub(r"[^\w.-]", "_", t) for t in tags)
    paths = table.write(Path(report_dir) if report_dir else bundle.parent / "bench", stem, reports)
    if json_file:
        Path(json_file).write_text(json.dumps({"rows": table.rows, "reports": reports}, indent=2, default=str) + "\n")
    click.echo(render.fleet_table(table))
    if reports:
        click.echo(f"  appended {len(reports)} run(s) to {path}", err=True)
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()), err=True)
    failed = fleet.failure(results)
    if failed:
        raise failed


@main.command()
@click.option("--history", type=click.Path(dir_okay=False), default=None,
              help="History file [default: $EDGEKIT_HISTORY or ~/.local/share/edgekit/history.jsonl].")
@click.option("--runs", "show_runs", is_flag=True, help="List the most recent runs one by one instead.")
@click.option("--last", default=20, show_default=True, help="With --runs: how many.")
@click.option("--bundle", "bundle_name", default=None, help="Only runs of this bundle (its name, e.g. lite0-arm64-int8).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Also draw p50 latency per device and precision to this PNG.")
def report(history, show_runs, last, bundle_name, plot) -> None:
    """Compare bench runs across devices (from the history file): per bundle and device, its latest run's p50
    INT8 and FP32, the speed-up, the agreement, temperature and throttling."""
    from edgekit.device import compare
    from edgekit.device import history as history_mod

    if plot and not Path(plot).resolve().parent.is_dir():
        raise UsageError(f"--plot {plot}: its directory does not exist")
    if plot and Path(plot).suffix.lower() != ".png":
        raise UsageError(f"--plot {plot}: the chart is a PNG; give a file name ending in .png")
    runs = history_mod.read_history(Path(history) if history else None)
    if bundle_name:
        runs = [r for r in runs if r["bundle"]["name"] == bundle_name]
    if not runs:
        raise DeviceError(f"no bench runs{' of ' + bundle_name if bundle_name else ''} recorded in "
                          f"{history or history_mod.history_path()}; run edgekit bench first")
    if show_runs:
        click.echo(render.history_table(runs[-last:]))
    table = compare.rows(runs)
    if not show_runs:
        click.echo(render.compare_table(table))
    if plot:
        click.echo(f"wrote {compare.plot(table, Path(plot))}", err=True)
