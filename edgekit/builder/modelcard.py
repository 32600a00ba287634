"""The bundle's model card (README.md), generated from its manifest: what it is, how to feed it, how to run it."""
from __future__ import annotations


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.2f} %"


def render(m: dict) -> str:
    v, t, inp = m["variant"], m["target"], m["input"]
    val = m.get("validation") or {}
    q = inp.get("quantization")
    lines = [f"# {m['name']}", "",
             f"EfficientNet-Lite **{v['name']}** ({v['input_size']} px) as an INT8 **{t['format']}** for the "
             f"`{t['name']}` target, run with **{t['runtime']}**. Built by edgekit {m['edgekit']['version']} "
             f"({m['created']}); `model.fp32.*` is the FP32 reference in the same format.", ""]
    if not m["weights"]["pretrained"]:
        lines += [f"**{m['weights']['warning']}**", ""]
    lines += ["## Input contract",
              f"- tensor `{inp.get('name', 'pixels')}`, shape {inp['shape']}, {inp['layout']}, {inp['dtype']}, RGB",
              f"- values: raw pixels 0..255 (mean {inp['mean']}, std {inp['std']} applied to 0..255 pixels"
              + (f"; quantized with scale {q['scale']}, zero point {q['zero_point']}" if q else "") + ")",
              f"- preprocessing: shorter side to {m['preprocessing']['resize']} px "
              f"({m['preprocessing']['interpolation']}), center crop {m['preprocessing']['crop']} px",
              f"- output `{m['output']['name']}` {m['output']['shape']}: {m['output']['meaning']}", "",
              "## Run it on the device", "```bash",
              t["device_install"].replace("'edgekit[", "'.[") + "   # in an edgekit checkout: numpy, Pillow, runtime",
              "edgekit bench .                                   # latency + drift against the golden set",
              "edgekit bench . --images photos/                  # + drift on your own images",
              "python -c \"from edgekit.device import runtimes, preprocess; from edgekit.core import bundle as M; "
              "m = M.read('.'); "
              "run = runtimes.open_runner(m['target']['runtime'], m['artifacts']['int8']); "
              "x = preprocess.to_input(preprocess.pixels(preprocess.open_rgb('cat.jpg'), m['preprocessing']), "
              "m['input']); print(m['class_names'][run(x).argmax()])\"",
              "```", "", "## Measured"]
    if val.get("images"):
        lines += [f"On {val['images']} images held out from calibration ({val.get('source', '')}), with "
                  f"{val['runtime']} on the build machine ({m['build_machine'].get('cpu', '?')}, "
                  f"{m['build_machine'].get('cores', '?')} cores):", "",
                  "| top-1 agreement INT8 vs FP32 | top-1 FP32 | top-1 INT8 | logit SQNR |", "|---|---|---|---|",
                  f"| {_pct(val.get('top1_agreement'))} | {_pct(val.get('top1_fp32'))} | {_pct(val.get('top1_int8'))} "
                  f"| {val.get('logit_sqnr_db', float('nan')):.1f} dB |"]
        if val.get("caveat"):
            lines += ["", f"**Note:** these figures were {val['caveat']}."]
    else:
        lines += ["No validation images were available at build time."]
    lines += ["", f"Calibration: {m['calibration'].get('method')} on {m['calibration'].get('images_used')} images "
              f"({m['calibration'].get('source')}). Latency depends on the device: measure it there with "
              "`edgekit bench`.", ""]
    return "\n".join(lines)
