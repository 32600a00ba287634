"""The accuracy-budget search (`--max-drop`, `--min-agreement`): find the cheapest model that keeps the budget on
the validation images, say what the chosen layers cost in latency, or fail saying what was tried and why it cannot
hold (near ties)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from edgekit.analysis import near_ties
from edgekit.analysis.choice import Chosen, brief, score, tried_only
from edgekit.builder.cache import Hit
from edgekit.builder.request import Budget, TuneOptions
from edgekit.builder.route import Route
from edgekit.builder.stages import Run
from edgekit.builder.validate import stage_validate
from edgekit.core import contract
from edgekit.core.bundle import write_json
from edgekit.core.intervals import percent, points
from edgekit.device import preprocess, runtimes
from edgekit.errors import BuildError, UnsupportedOp

# the search gives up after this many layers raised (in float, or int16 tensors): past it, int8 has lost its point
MAX_RAISED_LAYERS = 8
MAX_SLOWDOWN = 1.10  # mixed-precision latency over plain int8 past which the build warns (issue 6's limit)
RANGE_METHODS = ("percentile", "minmax")  # what a budget tries before any layer is raised
RANKING_IMAGES = 32  # calibration images the budget ranks layers on (edgekit analyze: --images)
LATENCY_RUNS = 40  # per artifact, interleaved, when a budget raised layers


def _step(c: Chosen, raised: int = 0) -> dict:
    return {"method": c.quant.method, "int8_aware": c.tuned, "raised_layers": raised, **brief(c.val.meta)}


@dataclass
class _Search:
    """Every model the search validated, in order: the record and the near-tie analysis read them."""
    budget: Budget
    tried: list[dict] = field(default_factory=list)
    vals: list[Hit] = field(default_factory=list)

    def meets(self, c: Chosen, raised: int = 0) -> bool:
        """Record a validated model; whether it keeps the budget."""
        self.vals.append(c.val)
        self.tried.append(_step(c, raised))
        return not self.budget.problems(c.val.meta)

    def held(self, c: Chosen, met_by: str | None = None, raised_to: str | None = None,
             layers: list[dict] = ()) -> Chosen:
        """`c`, the model that keeps the budget, with the search's record."""
        c.mixed = {**_budget_block(self.budget, raised_to, list(layers), self.tried, self.vals, met_by or _met_by(c)),
                   **(c.mixed or {})}
        return c


def meet_budget(run: Run, route: Route, st: Chosen) -> Chosen:
    """Make the INT8 artifact keep the accuracy budget on the validation images, cheapest change first:
    0. with --int8-aware, when the tuned model misses, the post-training model it came from;
    1. the other activation-range methods (still plain int8, no latency cost), each validated with the target's
       runtime;
    2. INT8-aware fine-tuning of the best post-training model (plain int8, the same graph: costs build time only),
       unless the build already asked for it (--int8-aware);
    3. on the best post-training model, the layers that recover most (the route's sensitivity ranking, on
       calibration images) raised to the route's higher precision, one more at a time, each model validated, up to
       MAX_RAISED_LAYERS.
    BuildError naming the most sensitive layers if nothing holds. The record names the step that met the budget."""
    req = run.req
    search = _Search(req.budget)
    if search.meets(st):
        return search.held(st)
    best_plain = st  # the best post-training model: what tuning and raised layers start from
    if st.rival is not None:  # --int8-aware: the other of its two models, validated already
        if search.meets(st.rival):
            return search.held(st.rival)
        if st.tuned:
            best_plain = st.rival
    for cand in _other_ranges(run, route, st):
        if search.meets(cand):
            return search.held(cand)
        if score(cand.val.meta) > score(best_plain.val.meta):
            best_plain = cand
    tune_record = tried_only(st.tuning)
    if req.tune is None:  # with --int8-aware the first model was already tuned
        cand, tune_record = _tuned(run, route, best_plain)
        if cand is not None and search.meets(cand):
            return search.held(cand)
    breq = dataclasses.replace(req, quant=best_plain.quant, tune=None)
    sens = route.sensitivity(run, breq, best_plain.arts, RANKING_IMAGES, route.budget_max_macs_share)
    ranked = [e for e in sens.meta["layers"] if e["gain_db"] > 0][:MAX_RAISED_LAYERS]
    for k in range(1, len(ranked) + 1):
        arts = route.raise_layers(run, breq, best_plain.arts, ranked[:k])
        cand = Chosen(arts, stage_validate(run, breq, arts.tgt), best_plain.quant,
                      {"ranking": {k_: sens.meta[k_] for k_ in ("images", "image_source", "runtime")}},
                      best_plain.arts.tgt, tuning=tune_record)
        if search.meets(cand, raised=k):
            return search.held(cand, f"{k} layer(s) in {route.raised_to}", route.raised_to, ranked[:k])
    _fail(req, route, search, ranked, sens, tune_record)


def _other_ranges(run: Run, route: Route, st: Chosen):
    """The post-training models of the route's other range methods, validated, one at a time (tried, not shipped:
    the INT8-aware record they carry says it was not theirs)."""
    req = run.req
    for method in RANGE_METHODS:
        if method == st.quant.method or method not in route.methods:
            continue
        alt = dataclasses.replace(req, quant=dataclasses.replace(req.quant, method=method))
        arts = route.artifacts(run, alt)
        yield Chosen(arts, stage_validate(run, alt, arts.tgt), alt.quant, tuning=tried_only(st.tuning))


def _tuned(run: Run, route: Route, plain: Chosen) -> tuple[Chosen | None, dict]:
    """INT8-aware fine-tuning of `plain`, validated when it changed the model; and its record (kept or not, the
    manifest says it was tried)."""
    treq = dataclasses.replace(run.req, quant=plain.quant, tune=TuneOptions())
    try:
        arts, tuning = route.tune(run, treq, plain.arts)
    except UnsupportedOp as e:  # a graph the route's simulation cannot train (--allow-float ops): next step
        return None, {"kept": False, "skipped": str(e)}
    if not tuning["kept"]:
        return None, tuning
    return Chosen(arts, stage_validate(run, treq, arts.tgt), plain.quant, tuning=tuning, base=plain.arts,
                  tuned=True), tuning


def _fail(req, route: Route, search: _Search, ranked: list[dict], sens: Hit, tune_record: dict | None):
    """BuildError: what was tried, the best of it, the most sensitive layers and the near ties; the search, near
    ties and ranking written beside the output."""
    budget, tried = search.budget, search.tried
    top = ", ".join(f"{e['layer']} (+{e['gain_db']:.2f} dB)" for e in ranked[:3]) or "no layer recovers any SQNR"
    best_i = max(range(len(tried)), key=lambda i: score(tried[i]))  # the noise and the message: the same model
    ties = _near_ties(budget, search.vals, best_i)
    problems = budget.problems(search.vals[0].meta)
    report = write_json(req.out_dir / f"{req.bundle_name}.budget-not-met.json",
                        {"variant": req.variant.name, "target": req.target.name, "budget": budget.to_dict(),
                         "problems": problems, "raised_to": route.raised_to, "search": tried, "near_ties": ties,
                         "int8_aware": tune_record, "ranking": sens.meta})
    raise BuildError(f"{req.variant.name} on {req.target.name}: accuracy budget {budget.describe()} not met "
                     f"({'; '.join(problems)}); tried {_tried(tried, best_i, route.raised_to)}; most sensitive: "
                     f"{top}; {_describe_ties(ties)}; search, near ties and per-layer ranking: {report}")


def _met_by(c: Chosen) -> str:
    return (f"INT8-aware fine-tuning ({c.quant.method} ranges, {c.tuning['seconds']:.0f} s)" if c.tuned
            else f"post-training quantization ({c.quant.method} ranges)")


def _budget_block(budget: Budget, raised_to: str | None, layers: list[dict], tried: list[dict],
                  vals: list[Hit], met_by: str) -> dict:
    """The manifest's record of a budget that held, on the last model validated."""
    return {"budget": budget.to_dict(), "met_by": met_by, "raised_to": raised_to, "layers": layers,
            "search": tried, "near_ties": _near_ties(budget, vals, len(vals) - 1)}


def _near_ties(budget: Budget, vals: list[Hit], chosen: int) -> dict | None:
    """near_ties.analyse over every model the search validated; the noise is measured on vals[chosen]."""
    runs = [np.load(v.path / "logits.npz") for v in vals if (v.path / "logits.npz").exists()]
    if len(runs) != len(vals):  # no usable validation images
        return None
    fp32 = runs[0]["fp32"]
    return near_ties.analyse(fp32, runs[chosen]["int8"], [r["int8"] for r in runs], list(runs[0]["ids"]),
                             budget.allowed_disagreements(len(fp32)), runs[0]["labels"])


def _describe_ties(t: dict | None) -> str:
    if not t:
        return "no validation logits to analyse"
    most = ", ".join(f"{f['id']} (FP32 top-2 margin {f['fp32_margin']:.3f}, {f['flipped_in_models']}/{t['models']})"
                     for f in t["flipped"][:3])
    allowed = t.get("allowed_disagreements")
    return (f"near ties: {t['expected_disagreements']:.1f} disagreements expected at the INT8 noise (sd "
            f"{100 * t['relative_margin_noise']:.1f} % of the top-1 logit on the top-2 margin)" +
            (f" against {allowed} allowed" if allowed is not None else "") +
            (f", flipped most: {most}" if most else ""))


def _tried(tried: list[dict], best_i: int, raised_to: str) -> str:
    best = tried[best_i]
    return (f"{len(tried)} models, best {percent(best['top1_agreement'] or 0, best.get('top1_agreement_ci95'))} "
            f"agreement, drop {points(best['top1_drop_points'], best.get('top1_drop_points_ci95'))} ({best['method']}{', INT8-aware' if best['int8_aware'] else ''}, "
            f"{best['raised_layers']} layer(s) in {raised_to})")


def mixed_latency(run: Run, plain: Hit, mixed: Hit) -> dict:
    """What the raised layers cost: plain int8 and mixed artifacts timed interleaved with the target's runtime
    (1 thread and the runtime's default), on one preprocessed image."""
    from edgekit.device.harness import interleaved

    req = run.req
    x = preprocess.to_input(np.full((1, req.variant.input_size, req.variant.input_size, 3), 128, np.uint8),
                            contract.for_artifacts(req.target, req.variant)["int8"])
    out = {}
    for threads in (1, None):
        runners = {k: runtimes.open_runner(req.target.runtime, h.path / h.meta["int8"], threads=threads)
                   for k, h in (("int8", plain), ("mixed", mixed))}
        tick = run.progress(f"budget: latency, {threads or 'default'} thread(s)", LATENCY_RUNS, "run")
        r = interleaved(runners, {k: x for k in runners}, LATENCY_RUNS, 5, tick)
        out[f"threads_{threads or 'default'}"] = {"int8_p50_ms": round(r["int8"]["p50_ms"], 3),
                                                  "mixed_p50_ms": round(r["mixed"]["p50_ms"], 3),
                                                  "ratio": round(r["mixed"]["p50_ms"] / r["int8"]["p50_ms"], 3)}
    return out
