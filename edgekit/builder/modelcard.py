"""The bundle's model card (README.md), generated from its manifest: what it is, how to feed it, how to run it."""
from __future__ import annotations

from edgekit.core.intervals import agreement_and_sqnr, percent, points


def _pct(v, interval=None) -> str:
    return "—" if v is None else percent(v, interval)


def device_section(m: dict) -> list[str]:
    """Commands that paste into a shell on the board, in this directory, with only the package index reachable."""
    inst, t = m["device_install"], m["target"]
    image = m.get("example_image") or "photo.jpg"
    lines = ["## Run it on the board",
             f"Copy this directory to the device (for example `scp -r {m['name']} "
             f"{'pi@raspberrypi.local' if t['name'] == 'arm64' else 'user@device'}:`) or pull it "
             "there with `edgekit pull`. It carries edgekit's own wheel; the runtime "
             f"({t['runtime']}) comes from the package index. On the board, in this directory:", "", "```bash",
             *([f"echo '{inst['sha256']}  {inst['wheel']}' | sha256sum -c -  # the wheel is the one built"]
               if inst.get("sha256") else []),
             "python3 -m venv ~/edgekit-venv  # Debian and Raspberry Pi OS: sudo apt install python3-venv first",
             f"~/edgekit-venv/bin/{inst['pip']}",
             "~/edgekit-venv/bin/edgekit bench .  # latency, drift against the golden set, the INT8 verdict",
             *([f"~/edgekit-venv/bin/edgekit predict . {image}"] if m.get("example_image") else []),
             "```", ""]
    if inst.get("note"):
        lines += [f"Note: {inst['note']}: install the wheel without an extra (`pip install ./{inst['wheel']}`) in a "
                  "venv made with `--system-site-packages`.", ""]
    if not m.get("example_image"):
        lines += ["This bundle has no golden set, so no example image: `~/edgekit-venv/bin/edgekit predict . "
                  "photo.jpg` with one of yours.", ""]
    lines += ["From Python (`~/edgekit-venv/bin/python`), with the preprocessing that was measured:", "", "```python",
              "import edgekit", "",
              f"model = edgekit.load(\".\")  # verifies the bundle, opens {m['artifacts']['int8']} with {t['runtime']}",
              f"for p in model.classify(\"{image}\", top=3):",
              "    print(p.rank, p.name, round(p.probability, 3))", "```", "",
              "Video files, streams and cameras need OpenCV, the `device-video` extra:", "", "```bash",
              f"~/edgekit-venv/bin/pip install \"./{inst['wheel']}[{inst['extra']},device-video]\"",
              "~/edgekit-venv/bin/edgekit predict . --camera  # or a video file, or rtsp://...", "```", ""]
    return lines


def classes_section(m: dict) -> list[str]:
    """The classes the model tells apart and how it was trained (a model of your own classes)."""
    if (m.get("classes") or {}).get("index") != "custom":
        return ["Classes: the 1000 of ImageNet-1k (`labels.txt`, WordNet ids in the manifest).", ""]
    names = m["class_names"]
    lines = ["## Classes", f"{len(names)} classes, in the order of the outputs (`labels.txt`): "
             + ", ".join(f"`{n}`" for n in names) + ".", ""]
    t = m.get("training")
    if t:
        acc = t.get("val_accuracy")
        lines += [f"Trained by `edgekit train --mode {t.get('mode')}` from {m['variant']['name']}'s ImageNet weights "
                  f"({t.get('weights')}) on {t.get('train_images')} images, "
                  f"{t.get('epochs_run')} epoch(s), best epoch {t.get('best_epoch')}: FP32 top-1 "
                  f"{_pct(acc)} on {t.get('val_images')} validation images ({t.get('val_source')}).", ""]
    return lines


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
    lines += classes_section(m)
    lines += ["## Input contract",
              f"- tensor `{inp.get('name', 'pixels')}`, shape {inp['shape']}, {inp['layout']}, {inp['dtype']}, RGB",
              f"- values: raw pixels 0..255 (mean {inp['mean']}, std {inp['std']} applied to 0..255 pixels"
              + (f"; quantized with scale {q['scale']}, zero point {q['zero_point']}" if q else "") + ")",
              f"- preprocessing: shorter side to {m['preprocessing']['resize']} px "
              f"({m['preprocessing']['interpolation']}), center crop {m['preprocessing']['crop']} px",
              f"- output `{m['output']['name']}` {m['output']['shape']}: {m['output']['meaning']}", "",
              *device_section(m), "## Measured"]
    if val.get("images"):
        lines += [f"On {val['images']} images held out from calibration ({val.get('source', '')}), with "
                  f"{val['runtime']} on the build machine ({m['build_machine'].get('cpu', '?')}, "
                  f"{m['build_machine'].get('cores', '?')} cores):", "",
                  "| top-1 agreement INT8 vs FP32 | top-1 FP32 | top-1 INT8 | top-1 drop | logit SQNR |",
                  "|---|---|---|---|---|",
                  f"| {_pct(val.get('top1_agreement'), val.get('top1_agreement_ci95'))} "
                  f"| {_pct(val.get('top1_fp32'), val.get('top1_fp32_ci95'))} "
                  f"| {_pct(val.get('top1_int8'), val.get('top1_int8_ci95'))} "
                  f"| {'—' if val.get('top1_drop_points') is None else points(val['top1_drop_points'], val.get('top1_drop_points_ci95'))} "
                  f"| {val.get('logit_sqnr_db', float('nan')):.1f} dB |", "",
                  f"Brackets: 95 % intervals (Wilson's for a proportion, Newcombe's paired one for the drop); on "
                  f"{val['images']} images one image is {100 / val['images']:.2f} points."]
        if val.get("per_class"):
            lines += ["", "| class | images | top-1 FP32 | top-1 INT8 |", "|---|---|---|---|"]
            lines += [f"| {r['class']} | {r['images']} | {_pct(r['top1_fp32'], r.get('top1_fp32_ci95'))} | "
                      f"{_pct(r['top1_int8'], r.get('top1_int8_ci95'))} |" for r in val["per_class"]]
        if val.get("caveat"):
            lines += ["", f"**Note:** these figures were {val['caveat']}."]
    else:
        lines += ["No validation images were available at build time."]
    for w in m.get("warnings") or []:
        lines += ["", f"**Warning:** {w}"]
    lines += ["", f"Calibration: {m['calibration'].get('method')} on {m['calibration'].get('images_used')} images "
              f"({m['calibration'].get('source')})."]
    tuned = m.get("int8_aware")
    if tuned and tuned.get("shipped"):
        b, a = tuned["held_out_before"], tuned["held_out_after"]
        lines[-1] += (f" The int8 weights were then fine-tuned through the target's int8 arithmetic towards the FP32 "
                      f"model (INT8-aware fine-tuning on {tuned['train_images']} images; on the "
                      f"{tuned['held_out_images']} calibration images held out to choose its epoch, logit SQNR "
                      f"{b['logit_sqnr_db']:.1f} -> {a['logit_sqnr_db']:.1f} dB; the figures above are on images it never "
                      "saw). The FP32 reference is the original model.")
    if tuned and (tv := tuned.get("validation") or {}).get("tuned"):
        lines[-1] += (f" On the validation images the post-training model scored {agreement_and_sqnr(tv['post_training'])}, "
                      f"the fine-tuned one {agreement_and_sqnr(tv['tuned'])}: the bundle ships the "
                      f"{'fine-tuned' if tuned.get('shipped') else 'post-training'} model.")
    lines += ["Latency depends on the device: measure it there with `edgekit bench`.", ""]
    return "\n".join(lines)
