"""The last step of a build: the bundle directory (artifacts, labels, golden set, model card, manifest), assembled
in a temporary directory beside its final place and renamed into it."""
from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from pathlib import Path

from edgekit import __version__
from edgekit.builder import modelcard, wheel
from edgekit.builder.cache import Hit
from edgekit.builder.provenance import git_commit, tool_versions
from edgekit.builder.request import BuildRequest
from edgekit.builder.route import Artifacts
from edgekit.builder.stages import StageLog
from edgekit.core import arch, contract
from edgekit.core import bundle as manifest
from edgekit.device.system import machine
from edgekit.errors import BuildError


def io_blocks(req: BuildRequest, tgt: Hit) -> dict:
    """The manifest's input contract (of the INT8 artifact; the FP32 reference's too where it differs) and output."""
    contracts = contract.for_artifacts(req.target, req.variant)
    classes = req.classes
    what = ("the ImageNet-1k class index" if classes.imagenet else
            f"the {len(classes)} classes " + ", ".join(classes.names[:6]) + (", ..." if len(classes) > 6 else ""))
    out = {"name": contract.OUTPUT_NAME, "shape": [1, req.variant.num_classes], "dtype": "float32",
           "quantization": None, "meaning": f"logits (before softmax) over {what}, in the order of labels.txt"}
    out.update(tgt.meta.get("output") or {})
    if out["quantization"]:
        out["dequantize"] = "logits = (q - zero_point) * scale; edgekit's runners return dequantized float32 logits"
    doc = {"input": contracts["int8"], "output": out}
    if contracts["fp32"] != contracts["int8"]:
        doc["fp32_input"] = contracts["fp32"]
    return doc


def _write_example(golden: Path, dest: Path) -> str:
    """The first golden input as a PNG: an image the model card's commands classify on the board."""
    import numpy as np
    from PIL import Image

    Image.fromarray(np.load(golden)["pixels"][0]).save(dest / manifest.EXAMPLE_IMAGE, optimize=True)
    return manifest.EXAMPLE_IMAGE


def check_replace(req: BuildRequest) -> None:
    """A bundle of other weights or other classes under the same name is not silently replaced (`--force`)."""
    if not req.replace:
        manifest.refuse_other_model(req.out_dir / req.bundle_name, req.weights.sha256, list(req.classes.names))


def _training(req: BuildRequest) -> dict | None:
    """How the weights were trained, as `edgekit train` recorded it in the checkpoint."""
    if req.weights.path is None or req.classes.imagenet:  # packaged ImageNet weights carry no training record
        return None
    from edgekit.models.checkpoint import inspect_checkpoint

    meta = inspect_checkpoint(req.weights.path).meta
    return (meta or {}).get("training")


def write_bundle(req: BuildRequest, arts: Artifacts, val: Hit, gold: Hit, log: StageLog, mixed: dict | None = None,
                 build_warnings: list[str] = (), tuning: dict | None = None) -> Path:
    """`tuning`: INT8-aware fine-tuning's record with `shipped` (whether the bundle's int8 model is the tuned one)."""
    out_root = req.out_dir
    check_replace(req)
    manifest.prepare_out(out_root)  # swept of a killed build's half-assembled bundle
    try:
        tmp = Path(tempfile.mkdtemp(prefix=manifest.temp_prefix(), dir=out_root))
    except OSError as e:
        raise BuildError(f"cannot write to output directory {out_root}: {e.strerror}") from None
    final = out_root / req.bundle_name
    exp, q, tgt = arts.exp, arts.q, arts.tgt
    try:
        for name in (tgt.meta["int8"], tgt.meta["fp32"]):
            for f in tgt.path.glob(Path(name).stem + ".*"):
                shutil.copyfile(f, tmp / f.name)
        (tmp / manifest.LABELS).write_text("\n".join(req.classes.names) + "\n")
        example = None
        if gold.meta.get("images"):
            shutil.copyfile(gold.path / manifest.GOLDEN_FILE, tmp / manifest.GOLDEN_FILE)
            example = _write_example(gold.path / manifest.GOLDEN_FILE, tmp)
        wheel_file = wheel.build_wheel(tmp).name
        v = req.variant
        weights = {"origin": req.weights.origin, "sha256": req.weights.sha256, "pretrained": req.weights.pretrained}
        if not req.weights.pretrained:
            weights["warning"] = ("RANDOM WEIGHTS: this bundle was built with --random-weights; it is not a trained "
                                  "classifier and its accuracy figures are meaningless")
        doc = {
            "name": final.name,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "edgekit": {"version": __version__, "git_commit": git_commit()},
            "variant": {**v.to_dict(), "macs": arch.count_macs(v)},
            "target": {"name": req.target.name, "format": req.target.format, "runtime": req.target.runtime},
            # the bundle installs its own device side: edgekit's wheel with the runtime's extra
            "device_install": {"wheel": wheel_file, "sha256": manifest.file_sha256(tmp / wheel_file),
                               "extra": req.target.device_extra,
                               "pip": f'pip install "./{wheel_file}[{req.target.device_extra}]"',
                               **({"note": req.target.device_note} if req.target.device_note else {})},
            "example_image": example,
            "precision": f"int8 with {len(mixed['layers'])} layer(s) in {mixed['raised_to']}"
            if mixed and mixed["layers"] else "int8",
            "mixed_precision": mixed,
            "int8_aware": tuning,
            "artifacts": {"int8": tgt.meta["int8"], "fp32": tgt.meta["fp32"]},
            **io_blocks(req, tgt),
            "preprocessing": contract.preprocessing(v),
            "labels": manifest.LABELS,
            **req.classes.to_manifest(),
            "classes": {"count": len(req.classes), "index": "ImageNet-1k" if req.classes.imagenet else "custom",
                        **({"model_name": req.name} if req.name else {})},
            "weights": weights,
            "training": _training(req),
            "export": exp.meta,
            "calibration": {"source": req.selection.published_source, "digest": req.selection.calib_digest,
                            **({"recipe": req.selection.recipe} if req.selection.recipe else {}),
                            "requested_images": len(req.selection.calib), **req.quant.to_dict(),
                            **{k: v for k, v in q.meta.items() if k != "int8_aware"}},
            "validation": {"source": req.selection.val_source, "digest": req.selection.val_digest,
                           "runtime": req.target.runtime, **val.meta,
                           **({"caveat": req.selection.val_caveat} if req.selection.val_caveat else {})},
            "warnings": req.selection.warnings() + list(build_warnings),
            "golden": gold.meta,
            "backend_checks": tgt.meta.get("checks", {}),
            "timings": log.stages,
            "tools": tool_versions(),
            "build_machine": machine(),
        }
        (tmp / manifest.MODEL_CARD).write_text(modelcard.render(doc))
        manifest.write(tmp, doc)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a bundle is meant to be read and shipped
        manifest.replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
