"""What `edgekit build` is told besides which pairs and where: plain values as the command line gives them, so that
one build can be described to another process or another machine (a `--jobs` child, a Ray task) and turned into a
BuildRequest there, where its images and weights are resolved."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from edgekit.builder.request import Budget, BuildRequest, QuantOptions, TuneOptions


@dataclass(frozen=True)
class BuildOptions:
    calib: str | None = None  # a directory or a recipe name; None: the embedded default recipe
    num_calib: int = 200
    num_val: int = 1000
    method: str | None = None  # None: the target's calibration_method
    rounding: str = "gptq"
    val_dir: str | None = None
    weights_file: str | None = None
    random_weights: bool = False
    max_drop: float | None = None  # top-1 points
    min_agreement: float | None = None  # percent, as --min-agreement takes it
    allow_float: bool = False
    cache_dir: str | None = None  # None: $EDGEKIT_CACHE_DIR or ~/.cache/edgekit of the process that builds
    no_cache: bool = False
    labels_file: str | None = None  # class names of a plain state dict's head, one per line
    name: str | None = None  # the custom model's name (bundle prefix); None: the checkpoint's, or none for ImageNet
    force: bool = False  # replace a bundle of other weights or classes under the same name
    int8_aware: bool | None = None  # INT8-aware fine-tuning after calibration; None: as the checkpoint asks (else off)

    @property
    def budget(self) -> Budget | None:
        if self.max_drop is None and self.min_agreement is None:
            return None
        return Budget(self.max_drop, None if self.min_agreement is None else self.min_agreement / 100)

    def to_dict(self) -> dict:
        return asdict(self)

    def cli_args(self) -> list[str]:
        """The same options as `edgekit build` arguments (a child process builds what this one would)."""
        flags = {"calib": "--calib", "method": "--method", "val_dir": "--val", "weights_file": "--weights",
                 "max_drop": "--max-drop", "min_agreement": "--min-agreement", "cache_dir": "--cache-dir",
                 "labels_file": "--labels", "name": "--name"}
        out = ["--num-calib", str(self.num_calib), "--num-val", str(self.num_val), "--rounding", self.rounding]
        for key, flag in flags.items():
            if getattr(self, key) is not None:
                out += [flag, str(getattr(self, key))]
        for key, flag in (("random_weights", "--random-weights"), ("allow_float", "--allow-float"),
                          ("no_cache", "--no-cache"), ("force", "--force")):
            out += [flag] if getattr(self, key) else []
        if self.int8_aware is not None:
            out += ["--int8-aware" if self.int8_aware else "--no-int8-aware"]
        return out


def _one_checkpoint(options: BuildOptions, variants: int) -> None:
    from edgekit.errors import UsageError

    if options.weights_file and variants > 1:
        raise UsageError("--weights names one checkpoint: use it with a single --variant, not several or 'all'")


def with_checkpoint(options: BuildOptions, variant_spec: str | None) -> tuple[str, BuildOptions]:
    """What a checkpoint says for itself: `edgekit train`'s records its variant (used when --variant is not given)
    and its name (the bundle's prefix unless --name); a plain state dict of N outputs is named after its file."""
    import dataclasses

    from edgekit.models.checkpoint import inspect_checkpoint
    from edgekit.core.bundle import check_model_name, model_name_from

    from edgekit.core.variants import resolve_variants

    if options.name is not None:
        check_model_name(options.name)
    if not options.weights_file:
        return variant_spec or "lite0", options
    if variant_spec:
        _one_checkpoint(options, len(resolve_variants(variant_spec)))
    info = inspect_checkpoint(options.weights_file)
    variant_spec = variant_spec or info.variant or "lite0"
    name = options.name or info.name
    if name is None and options.labels_file:  # someone else's checkpoint with classes of its own
        name = model_name_from(Path(options.weights_file).stem)
    int8_aware = info.int8_aware if options.int8_aware is None else options.int8_aware
    return variant_spec, dataclasses.replace(options, name=check_model_name(name) if name else None,
                                             int8_aware=int8_aware)


def _quant(options: BuildOptions, target) -> QuantOptions:
    """The quantization options for `target`; a method the target's route lacks is refused here."""
    from edgekit.builder.route import check_method

    quant = QuantOptions(method=options.method or target.calibration_method, weight_rounding=options.rounding)
    check_method(target, quant.method)
    return quant


def check(options: BuildOptions, variants: set[str], targets: set[str]) -> None:
    """Mistakes in the options themselves (a method a target lacks, a calibration directory that is not there,
    --weights with several variants, a budget out of range) stop a matrix before any pair starts; the rest is each
    pair's own."""
    from edgekit.builder.calibration import select
    from edgekit.builder.classes import classes_for
    from edgekit.core.targets import get_target
    from edgekit.errors import check_extra

    _one_checkpoint(options, len(variants))
    options.budget  # noqa: B018  (a Budget out of range raises here)
    for v in variants:  # a checkpoint of another variant, a head --labels does not fit
        classes = classes_for(v, options.weights_file, options.labels_file)
    select(options.calib, options.num_calib, options.num_val, options.val_dir, classes if variants else None)
    for t in targets:
        target = get_target(t)
        for extra in ("build", target.build_extra):  # a route's converter missing: one line now, not mid-build
            check_extra(extra, "build")
        _quant(options, target)


def requests(options: BuildOptions, variant_names: str, target_name: str, out_dir: Path):
    """One BuildRequest per variant of `variant_names` for one target (weights resolved lazily, in order), and the
    class index (the checkpoint's, --labels, or ImageNet-1k). Errors in the options (an unknown method, a missing calibration directory) are raised here, before
    any build starts."""
    from edgekit.builder.calibration import select
    from edgekit.builder.classes import classes_for
    from edgekit.models.weights import resolve_weights
    from edgekit.core.targets import get_target
    from edgekit.core.variants import resolve_variants

    variants = resolve_variants(variant_names)
    target = get_target(target_name)
    _one_checkpoint(options, len(variants))
    classes = classes_for(variants[0].name, options.weights_file, options.labels_file)
    selection = select(options.calib, options.num_calib, options.num_val, options.val_dir, classes)
    quant = _quant(options, target)
    budget = options.budget

    def each():
        for v in variants:
            yield BuildRequest(v, target, resolve_weights(v, options.weights_file, options.random_weights),
                               selection, quant, Path(out_dir), allow_float=options.allow_float, budget=budget,
                               classes=classes, name=options.name, replace=options.force,
                               tune=TuneOptions() if options.int8_aware else None)

    return each(), classes
