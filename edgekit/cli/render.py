"""Every table and summary the command line prints, from the plain dicts the layers return."""
from __future__ import annotations

from pathlib import Path

from edgekit.core.intervals import agreement_and_sqnr, cell, percent, points
from edgekit.device.fingerprint import peak_c


def variants_table(rows: list[dict]) -> str:
    head = (f"{'variant':8} {'input':>5} {'crop':>6} {'interp':9} {'params (card)':>14} {'FLOPs (card)':>14} "
            f"{'MACs (ours)':>14} {'top-1':>6} {'top-5':>6}  weights")
    lines = [head]
    for r in rows:
        w = r["weights"]["package"] or f"--weights {r['weights']['upstream_file']}"
        lines.append(f"{r['name']:8} {r['input_size']:>5} {r['crop_pct']:>6.3f} {r['interpolation']:9} "
                     f"{r['card_params']:>14,} {r['card_flops']:>14,} {r['macs']:>14,} {r['card_top1']:>6.2f} "
                     f"{r['card_top5']:>6.2f}  {w}")
    return "\n".join(lines)


def build_summary(path: Path, m: dict) -> str:
    v = m["validation"]
    lines = [f"bundle: {path}", f"  weights: {m['weights']['origin']}"]
    if (m.get("classes") or {}).get("index") == "custom":
        names = m["class_names"]
        lines.append(f"  classes ({len(names)}): " + ", ".join(names[:12]) + (", ..." if len(names) > 12 else ""))
    for name, s in m["timings"].items():
        if isinstance(s, dict):
            lines.append(f"  {name:14} {s['seconds']:7.2f} s{'  (cached)' if s['cached'] else ''}")
    g = m["export"].get("graph")
    head = f"onnx: opset {g['opset']}, {g['nodes']} nodes" if g else f"float .tflite ({m['export'].get('converter')})"
    lines.append(f"  {head}, parity with PyTorch max|diff| {m['export']['parity']['max_abs_diff']:.1e}")
    checks = m.get("backend_checks") or {}
    if "integer_only" in checks:
        ops = ", ".join(f"{k} {n}" for k, n in checks["ops"].items())
        lines.append(f"  int8 .tflite: {'integer-only' if checks['integer_only'] else 'FLOAT OPS: ' + ', '.join(checks['float_ops'])}"
                     f" ({ops})")
    if v.get("images"):
        line = (f"  validation ({v['images']} held-out images, {v['runtime']}; 95 % intervals): top-1 agreement "
                f"{percent(v['top1_agreement'], v.get('top1_agreement_ci95'))}, logit SQNR {v['logit_sqnr_db']:.1f} dB")
        if "top1_fp32" in v:
            line += (f", top-1 FP32 {percent(v['top1_fp32'], v.get('top1_fp32_ci95'))} -> INT8 "
                     f"{percent(v['top1_int8'], v.get('top1_int8_ci95'))} "
                     f"(drop {points(v['top1_drop_points'], v.get('top1_drop_points_ci95'))})")
        lines.append(line)
        lines += per_class_lines(v.get("per_class"))
    if v.get("caveat"):
        lines.append(f"  note: these figures were {v['caveat']}")
    mixed = m.get("mixed_precision")
    ties = (mixed or {}).get("near_ties")
    if ties:
        allowed = ties.get("allowed_disagreements")
        lines.append(f"  near ties: {ties['expected_disagreements']:.1f} disagreements expected at the INT8 noise"
                     + (f", {allowed} allowed" if allowed is not None else "")
                     + f"; {ties['images_within_2_sd']} of {ties['images']} images within 2 sd of a tie")
    tuned = m.get("int8_aware")
    if tuned and tuned.get("skipped"):
        lines.append(f"  int8-aware fine-tuning skipped: {tuned['skipped']}")
    elif tuned:
        b, a = tuned["held_out_before"], tuned["held_out_after"]
        lines.append(f"  int8-aware fine-tuning ({tuned['seconds']:.0f} s): held-out calibration logit SQNR "
                     f"{b['logit_sqnr_db']:.2f} -> {a['logit_sqnr_db']:.2f} dB; "
                     + ("the bundle ships the tuned model" if tuned.get("shipped") else
                        "the bundle keeps the post-training model"))
        if (tv := tuned.get("validation") or {}).get("tuned"):
            p, t = tv["post_training"], tv["tuned"]
            lines.append(f"  decided on the validation images: post-training {agreement_and_sqnr(p)}; tuned "
                         f"{agreement_and_sqnr(t)}")
    if mixed and not mixed["layers"]:
        lines.append(f"  budget: met by {mixed.get('met_by') or 'plain int8'} ({len(mixed['search'])} models tried)")
    elif mixed:
        lat = mixed["latency"]["threads_1"]
        lines.append(f"  budget: {len(mixed['layers'])} layer(s) in {mixed['raised_to']} "
                     f"({', '.join(e['layer'] for e in mixed['layers'])}); 1-thread latency "
                     f"{lat['int8_p50_ms']:.2f} -> {lat['mixed_p50_ms']:.2f} ms (x{lat['ratio']:.2f})")
    for w in m.get("warnings") or []:
        lines.append(f"  warning: {w}")
    if not m["weights"]["pretrained"]:
        lines.append("  WARNING: " + m["weights"]["warning"])
    return "\n".join(lines)


def matrix_summary(rows: list[dict], wall_s: float) -> str:
    """The end of a build matrix: one line per pair, built or failed and why."""
    lines = [f"{'bundle':20} {'agreement [95 % interval]':>25} {'drop [95 % interval]':>20} {'INT8 MB':>7} "
             f"{'build s':>7} {'cached':>6}  where / error"]
    for r in rows:
        if r["ok"]:
            agree = cell(r["agreement"], r.get("agreement_ci95"))
            drop = "" if r["drop_points"] is None else points(r["drop_points"], r.get("drop_points_ci95"), unit="")
            lines.append(f"{r['bundle'][:20]:20} {agree:>25} {drop:>20} {r['int8_mb'] or 0:7.2f} "
                         f"{r['seconds']:7.1f} {r['cached']:>6}  {r['where']}")
        else:
            lines.append(f"{r['bundle'][:20]:20} {'FAILED':>25} {'':20} {'':7} {r['seconds']:7.1f} {'':6}  "
                         f"{r['error']}")
    ok = sum(r["ok"] for r in rows)
    busy = sum(r["seconds"] for r in rows)
    lines.append(f"{ok} of {len(rows)} pairs built in {wall_s:.1f} s wall ({busy:.1f} s of builds)")
    return "\n".join(lines)


def analysis_table(r: dict, top: int) -> str:
    b = r["all_int8"]
    lines = [f"{r['variant']} on {r['target']}: all int8 logit SQNR {b['logit_sqnr_db']:.2f} dB, agreement "
             f"{percent(b['top1_agreement'], b.get('top1_agreement_ci95'))} ({r['images']} {r['image_source']}, "
             f"{r['runtime']}; 95 % interval)",
             f"  ({r['method']})",
             f"{'#':>3} {'layer':48} {'kind':16} {'MACs':>6} {'SQNR dB':>8} {'gain':>6} {'agree %':>8}"]
    for i, e in enumerate(r["layers"][:top], 1):
        lines.append(f"{i:>3} {e['layer'][-48:]:48} {e['kind']:16} {100 * e['macs_share']:5.1f}% "
                     f"{e['logit_sqnr_db']:8.2f} {e['gain_db']:+6.2f} {100 * e['top1_agreement']:8.2f}")
    ranges = r["activation_ranges"]
    widest = sorted(ranges, key=lambda a: -(a["max"] - a["min"]))[:3]
    lines.append(f"{len(ranges)} activation grids; widest: " +
                 ", ".join(f"{a['tensor']} [{a['min']:.2f}, {a['max']:.2f}]" for a in widest))
    return "\n".join(lines)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def fingerprint_lines(r: dict) -> list[str]:
    fp = r.get("fingerprint")
    if not fp:
        return []
    feats = ", ".join(f"{k} {_yes(v)}" for k, v in fp["int8_features"].items()) or "unknown"
    f = fp["cpufreq"]
    freq = (f"{f['min_mhz']}-{f['max_mhz']} MHz" if f.get("max_mhz") else "no cpufreq") + \
        (f", governor {f['governor']}" if f.get("governor") else "")
    th = r.get("thermal") or {}
    temps = [(th.get(k) or {}).get("temperature_c") for k in ("before", "after")]
    heat = "temperature " + " -> ".join("?" if t is None else f"{t:.1f} C" for t in temps) if any(
        t is not None for t in temps) else "no temperature sensor"
    peak = peak_c(th)
    heat += f" (peak {peak:.1f} C)" if peak is not None and peak > max(t for t in temps if t is not None) else ""
    flags = (th.get("after") or {}).get("throttled")
    if flags:
        said = [f"now: {', '.join(flags['now'])}"] * bool(flags["now"]) + \
            [f"since boot: {', '.join(flags['since_boot'])}"] * bool(flags["since_boot"])
        heat += f", throttled flags {flags['raw']}" + (f" ({'; '.join(said)})" if said else " (none)")
    mem = fp["memory"].get("total_mb")
    lines = [f"  device: {fp['board'] or 'unknown board'}; {fp['cpu']}"
             + (f" (part {fp['cpu_part']})" if fp.get("cpu_part") else "") + f"; int8 instructions: {feats}",
             f"  clock {freq}; {heat}" + (f"; memory {mem / 1024:.1f} GiB" if mem else "")]
    lines += [f"  warning: {w['message']}" for w in r.get("run_warnings") or []]
    if "under-voltage" in ((th.get("after") or {}).get("throttled") or {}).get("since_boot", []):
        lines.append("  note: the board has seen under-voltage since boot: check its power supply (Pi 4: 5.1 V 3 A, "
                     "Pi 5: 5.1 V 5 A)")
    if r.get("comparable") is False:
        lines.append("  this run is not comparable with others (the warnings above); the report marks it so")
    return lines


def bench_table(r: dict) -> str:
    lines = [f"bench {r['bundle']['name']} on {r['device']['cpu']} ({r['device']['arch']}, "
             f"{r['device']['cores']} cores), {r['device']['runtime']} {r['device']['runtime_version']}",
             *fingerprint_lines(r),
             f"  {'threads':>7} {'precision':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'min ms':>8} "
             f"{'first ms':>9} {'GMAC/s':>7}"]
    for t, per in r["latency"].items():
        for p in ("int8", "fp32"):
            s = per[p]
            lines.append(f"  {t:>7} {p:>9} {s['p50_ms']:8.2f} {s['p90_ms']:8.2f} {s['p99_ms']:8.2f} "
                         f"{s['min_ms']:8.2f} {s['first_inference_ms']:9.1f} {s['gmac_per_s']:7.1f}")
        lines.append(f"  {t:>7} int8 speed-up over fp32 (p50): {per['int8_speedup']:.2f}x")
    g = r.get("golden")
    if not g:
        lines.append("  golden set: none in this bundle (built without validation images): no drift measured against "
                     "PyTorch; pass --images DIR")
    for w in r.get("warnings") or []:
        lines.append(f"  warning (from the build): {w}")
    if g:
        vp = g["vs_pytorch"]
        lines.append(f"  golden set ({g['images']} inputs): top-1 agreement with PyTorch FP32: INT8 "
                     f"{percent(vp['int8']['top1_agreement'], vp['int8'].get('top1_agreement_ci95'))}, FP32 artifact "
                     f"{percent(vp['fp32']['top1_agreement'], vp['fp32'].get('top1_agreement_ci95'))};"
                     f" INT8 vs FP32 artifact "
                     f"{percent(g['int8_vs_fp32']['top1_agreement'], g['int8_vs_fp32'].get('top1_agreement_ci95'))}, "
                     f"SQNR {g['int8_vs_fp32']['logit_sqnr_db']:.1f} dB")
        if r.get("caveat") and not r.get("images"):
            lines.append(f"  note: the golden set was {r['caveat']}")
    im = r.get("images")
    if im:
        line = (f"  images ({im['images']} from {im['source']}; 95 % intervals): INT8 vs FP32 agreement "
                f"{percent(im['top1_agreement'], im.get('top1_agreement_ci95'))}, preprocessing "
                f"{im['preprocess_ms_per_image']:.1f} ms/image")
        if "top1_fp32" in im:
            line += (f", top-1 FP32 {percent(im['top1_fp32'], im.get('top1_fp32_ci95'))} -> INT8 "
                     f"{percent(im['top1_int8'], im.get('top1_int8_ci95'))} (drop "
                     f"{points(im['top1_drop_points'], im.get('top1_drop_points_ci95'))})")
            if "top5_fp32" in im:
                line += f", top-5 {100 * im['top5_fp32']:.2f} % -> {100 * im['top5_int8']:.2f} %"
        lines.append(line)
        lines += per_class_lines(im.get("per_class"))
    lines.append(f"  peak resident memory {r['peak_rss_mb']:.0f} MB")
    if r.get("verdict"):
        lines.append(r["verdict"]["line"])
    return "\n".join(lines)


def history_table(runs: list[dict]) -> str:
    lines = [f"{'time':20} {'bundle':18} {'device':34} {'runtime':18} {'thr':>3} {'int8 p50':>9} "
             f"{'fp32 p50':>9} {'speedup':>7} {'agreement vs PyTorch [95 %]':>28}"]
    for r in runs:
        d = r["device"]
        g = r.get("golden") or {}
        vs = g.get("vs_pytorch", {}).get("int8", {})
        agree = cell(vs.get("top1_agreement"), vs.get("top1_agreement_ci95"))
        for t, per in r["latency"].items():
            lines.append(f"{r['time'][:19]:20} {r['bundle']['name'][:18]:18} {(d['cpu'] or '')[:34]:34} "
                         f"{(d['runtime'] + ' ' + str(d['runtime_version']))[:18]:18} {t:>3} "
                         f"{per['int8']['p50_ms']:6.2f} ms {per['fp32']['p50_ms']:6.2f} ms {per['int8_speedup']:6.2f}x "
                         f"{agree:>28}")
    return "\n".join(lines)


def compare_table(rows: list[dict]) -> str:
    lines = [f"{'bundle':18} {'device':44} {'runtime':15} {'thr':>3} {'int8 p50':>9} {'fp32 p50':>9} {'speedup':>7} "
             f"{'agreement [95 %]':>21} {'max temp':>8} {'throttled':>9}  runs"]
    for r in rows:
        agree = cell(r["agreement"], r.get("agreement_ci95"))
        temp = "" if r["max_temperature_c"] is None else f"{r['max_temperature_c']:6.1f} C"
        lines.append(f"{r['bundle'][:18]:18} {r['device'][:44]:44} {r['runtime'][:15]:15} {r['threads']:>3} "
                     f"{r['int8_p50_ms']:6.2f} ms {r['fp32_p50_ms']:6.2f} ms {r['speedup']:6.2f}x {agree:>21} "
                     f"{temp:>8} {r['throttled'] or '':>9}  {r['runs']}"
                     + ("" if r["comparable"] else "  not comparable (see the run's warnings)"))
    return "\n".join(lines)


def fleet_table(table) -> str:
    lines = [table.title, f"{'board':16} {'model':34} {'INT8 features':22} {'int8 p50':>9} {'fp32 p50':>9} "
                         f"{'speedup':>7} {'agreement [95 %]':>21} {'max temp':>8} {'thr.':>5}  verdict"]
    for r in table.rows:
        if not r["ok"]:
            lines.append(f"{r['board'][:16]:16} FAILED: {r['error']}")
            continue
        lines.append(f"{r['board'][:16]:16} {r['model'][:34]:34} {', '.join(r['int8_features'])[:22] or 'none':22} "
                     f"{r['int8_p50_ms']:6.2f} ms {r['fp32_p50_ms']:6.2f} ms {r['speedup']:6.2f}x "
                     f"{cell(r['agreement'], r.get('agreement_ci95')):>21} {_temp(r['max_temperature_c']):>8} "
                     f"{r['throttled'] or '-':>5}  "
                     f"{'INT8 pays off' if r['int8_pays_off'] else 'ship FP32'}"
                     + ("" if r["comparable"] else " (not comparable)"))
    ok = sum(r["ok"] for r in table.rows)
    lines.append(f"{ok} of {len(table.rows)} boards measured")
    return "\n".join(lines)


def _ms(v, unit: str = " ms") -> str:
    """A figure a store annotated (a string), or '?' where it is missing or not a number."""
    try:
        return f"{float(v):.2f}{unit}"
    except (TypeError, ValueError):
        return "?"


def _temp(v) -> str:
    return "" if v is None else f"{v:.1f} C"


def _annotated(r: dict, key: str) -> str:
    """A store annotation's figure (`key`, a fraction) with its interval (`key.ci95`, "lo,hi") as a table cell."""
    value = r.get(key)
    try:
        interval = tuple(float(x) for x in str(r.get(f"{key}.ci95")).split(","))
    except ValueError:
        interval = None
    return "" if value is None else cell(float(value), interval if interval and len(interval) == 2 else None)


def store_table(rows: list[dict]) -> str:
    lines = [f"{'name':24} {'variant':7} {'target':7} {'agreement [95 % interval]':>25} "
             f"{'INT8 top-1 [95 % interval]':>26}  {'signer key':16}  created"]
    for r in rows:
        agree, top1 = _annotated(r, "vnd.edgekit.agreement"), _annotated(r, "vnd.edgekit.top1")
        # the key id the store names (`edgekit keygen` printed it); pull --verify-key is what checks it
        signer = str(r.get("vnd.edgekit.signature.key-id") or "unsigned")
        if r.get("verified") == "false":  # its manifest is not the one published: figures shown as unknown
            agree = top1 = ""
            signer = "UNVERIFIED"
        lines.append(f"{r['name'][:24]:24} {r.get('vnd.edgekit.variant', ''):7} {r.get('vnd.edgekit.target', ''):7} "
                     f"{agree:>25} {top1:>26}  {signer[:16]:16}  "
                     f"{r.get('org.opencontainers.image.created', '')}")
        if r.get("verified") == "false":
            lines.append(f"    {r.get('problem') or 'its manifest is not the one published (altered in the store)'}: "
                         "figures not shown; pull refuses it")
        if r.get("bench") and r.get("vnd.edgekit.signature.key-id"):
            lines.append("    bench reports (a signature covers the bundle, not them; pull checks them against "
                         "their digests and this build):")
        for b in r.get("bench") or []:
            lines.append(f"    measured on {b.get('device')} ({b.get('runtime')}, {b.get('threads')} thr): p50 INT8 "
                         f"{_ms(b.get('int8_p50_ms'))}, FP32 {_ms(b.get('fp32_p50_ms'))}, speed-up "
                         f"{_ms(b.get('speedup'), 'x')}" + ("" if b.get("comparable") != "false" else
                                                           " (not comparable)"))
    return "\n".join(lines)


def per_class_lines(rows: list[dict] | None, indent: str = "    ") -> list[str]:
    """Top-1 per class (a model of a few classes): where the INT8 model loses, and on how many images."""
    if not rows:
        return []
    width = max(len(r["class"]) for r in rows)

    def cell(r: dict, p: str) -> str:
        lo_hi = r.get(f"top1_{p}_ci95")
        text = f"{100 * r[f'top1_{p}']:5.1f}%"
        return f"{text} [{100 * lo_hi[0]:4.0f}, {100 * lo_hi[1]:3.0f}]" if lo_hi else text

    out = [f"{indent}{'class':{width}} {'images':>6}  {'FP32 [95 % interval]':19}  INT8 [95 % interval]"]
    out += [f"{indent}{r['class']:{width}} {r['images']:6d}  {cell(r, 'fp32'):19}  {cell(r, 'int8')}" for r in rows]
    return out
