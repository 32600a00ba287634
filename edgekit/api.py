"""The build side from Python: `edgekit.build(...)`, the same code `edgekit build` runs for one pair (options
checked, the checkpoint's classes and name read, the cached stages, the bundle). `edgekit.train` is
edgekit.training.train; `edgekit.load` the device side's classifier."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekit.progress import Progress, no_progress


@dataclass(frozen=True)
class Built:
    path: Path  # the bundle directory
    manifest: dict


def build(variant: str | None = None, target: str = "x86", *, weights: str | Path | None = None,
          labels: str | Path | None = None, name: str | None = None, calib: str | Path | None = None,
          val: str | Path | None = None, num_calib: int = 200, num_val: int = 1000, method: str | None = None,
          rounding: str = "gptq", max_drop: float | None = None, min_agreement: float | None = None,
          out: str | Path = "dist", cache_dir: str | Path | None = None, force: bool = False,
          random_weights: bool = False, int8_aware: bool | None = None, progress: Progress = no_progress) -> Built:
    """Build one validated INT8 bundle; raises an EdgekitError (one line) for anything the user can fix.

    variant None: the variant a checkpoint of `edgekit train` was trained from, else lite0. `min_agreement` is a
    percentage, as on the command line. `int8_aware`: INT8-aware fine-tuning (None: as the checkpoint asks)."""
    from edgekit import pipeline
    from edgekit.builder.cache import Cache
    from edgekit.builder.options import BuildOptions, check, requests, with_checkpoint
    from edgekit.core.targets import get_target
    from edgekit.core.variants import resolve_variants
    from edgekit.errors import UsageError

    def text(p):  # a path made absolute (as the command line does); a recipe's name left as it is
        if p is None:
            return None
        path = Path(str(p)).expanduser()
        return str(path.resolve()) if path.exists() or str(p) != path.name else str(p)

    options = BuildOptions(calib=text(calib), num_calib=num_calib, num_val=num_val, method=method, rounding=rounding,
                           val_dir=text(val), weights_file=text(weights), random_weights=random_weights,
                           max_drop=max_drop, min_agreement=min_agreement, cache_dir=text(cache_dir),
                           labels_file=text(labels), name=name, force=force, int8_aware=int8_aware)
    variant, options = with_checkpoint(options, variant)
    variants = resolve_variants(variant)
    if len(variants) != 1:
        raise UsageError("edgekit.build builds one variant: call it once per variant")
    variant = variants[0].name
    check(options, {variant}, {get_target(target).name})
    req = next(requests(options, variant, target, Path(out).expanduser())[0])
    path, m = pipeline.build(req, Cache(options.cache_dir), progress)
    return Built(path, m)
