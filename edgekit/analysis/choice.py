"""Which of the models a build made ships: each is validated with the target's runtime on the validation images,
and the decision is made there, never on the images a step trained or chose an epoch on.

INT8-aware fine-tuning keeps an epoch on a few dozen held-out calibration images; whether the tuned model or the
post-training one ships is then decided here, on the validation images, and the manifest records both."""
from __future__ import annotations

from dataclasses import dataclass

from edgekit.builder.cache import Hit
from edgekit.builder.request import BuildRequest, QuantOptions
from edgekit.builder.route import Artifacts
from edgekit.builder.stages import Run
from edgekit.builder.validate import stage_validate


@dataclass
class Chosen:
    """What the stages up to validation produced for the model a build ships; `mixed` is the budget's record."""
    arts: Artifacts
    val: Hit
    quant: QuantOptions
    mixed: dict | None = None
    plain: Hit | None = None  # the plain int8 target artifacts, when layers were raised (for the latency cost)
    tuning: dict | None = None  # INT8-aware fine-tuning's record, when it ran
    base: Artifacts | None = None  # the post-training artifacts, when INT8-aware fine-tuning ran
    tuned: bool = False  # this model is the INT8-aware fine-tuned one (a record alone says it was tried)
    rival: Chosen | None = None  # --int8-aware: the other of the two validated models (an accuracy budget tries it)


def brief(d: dict) -> dict:
    """The figures a decision reads, from a validation's meta, with their 95 % intervals where it has them."""
    return {**{k: d.get(k) for k in ("top1_agreement", "top1_drop_points", "logit_sqnr_db")},
            **{k: d[k] for k in ("top1_agreement_ci95", "top1_drop_points_ci95") if k in d}}


def score(d: dict) -> tuple:
    """Better is greater: top-1 agreement with FP32, then the smaller top-1 drop, then logit SQNR."""
    return (d.get("top1_agreement") or 0, -(d.get("top1_drop_points") or 0), d.get("logit_sqnr_db") or 0)


def tuned_or_post_training(run: Run, req: BuildRequest, plain: Artifacts, tuned: Artifacts, tuning: dict) -> Chosen:
    """--int8-aware: both models validated (cached stages), the tuned one shipped only if it scores at least as well
    on the validation images; `tuning` (the tune stage's record) gains both figures and the reason."""
    pval = stage_validate(run, req, plain.tgt)
    record = {**tuning, "validation": {"post_training": brief(pval.meta)}}
    if not tuning["kept"]:  # nothing beat post-training on the held-out calibration images: the same model
        return Chosen(plain, pval, req.quant, tuning={**record, "decided_on": "held-out calibration images"},
                      base=plain)
    tval = stage_validate(run, req, tuned.tgt)
    record["validation"]["tuned"] = brief(tval.meta)
    record["decided_on"] = f"validation images ({tval.meta.get('images', 0)})"
    t = Chosen(tuned, tval, req.quant, tuning=record, base=plain, tuned=True)
    p = Chosen(plain, pval, req.quant, tuning=record, base=plain)
    t.rival, p.rival = p, t
    return t if score(tval.meta) >= score(pval.meta) else p


def tried_only(tuning: dict | None) -> dict | None:
    """The INT8-aware record a model of another step carries (the budget's other ranges, raised layers): that it
    was tried, without the validation figures of the two models it did not ship."""
    if tuning is None:
        return None
    return {k: v for k, v in tuning.items() if k not in ("validation", "decided_on")}
