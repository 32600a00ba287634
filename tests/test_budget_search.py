"""The accuracy budget's search (analysis/budget.py) and the INT8-aware ship decision (analysis/choice.py) on a fake
route whose every model has scripted validation figures: which models are tried, in which order, and which ships.
The real routes' budgets run in test_mixed_precision.py and test_int8_aware.py."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgekit.analysis import budget as budget_mod
from edgekit.analysis import choice
from edgekit.builder.cache import Hit
from edgekit.builder.request import Budget, QuantOptions, TuneOptions
from edgekit.builder.route import Artifacts
from edgekit.errors import BuildError


@dataclass(frozen=True)
class Req:  # the fields of a BuildRequest the search reads
    budget: Budget
    quant: QuantOptions
    out_dir: Path
    tune: TuneOptions | None = None
    variant: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(name="lite0"))
    target: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(name="fake"))
    bundle_name: str = "lite0-fake-int8"


def fig(agreement: float, sqnr: float = 20.0, drop: float = 0.0) -> dict:
    return {"top1_agreement": agreement, "top1_drop_points": drop, "logit_sqnr_db": sqnr, "images": 300}


def arts(label: str) -> Artifacts:
    return Artifacts(None, None, Hit(Path(label), {"label": label}, True))


class FakeRoute:
    """Models are labels: 'minmax', 'percentile' (post-training), 'tuned:<base>', '<base>+<k>' (k layers raised)."""
    name, methods, raised_to, sensitivity_method, budget_max_macs_share = "fake", ("minmax", "percentile"), "fp16", \
        "scripted", 1.0

    def __init__(self):
        self.calls: list[str] = []

    def artifacts(self, run, req):
        self.calls.append(req.quant.method)
        return arts(req.quant.method)

    def tune(self, run, req, a):
        self.calls.append(f"tune {a.tgt.meta['label']}")
        return arts(f"tuned:{a.tgt.meta['label']}"), {"kept": True, "seconds": 2.0}

    def sensitivity(self, run, req, a, images, max_macs_share=1.0):
        layers = [{"layer": f"L{i}", "gain_db": 1.0 - i / 10} for i in range(3)]
        return Hit(Path("ranking"), {"layers": layers, "images": images, "image_source": "calib", "runtime": "x"}, True)

    def raise_layers(self, run, req, a, chosen):
        label = f"{a.tgt.meta['label']}+{len(chosen)}"
        self.calls.append(label)
        return arts(label)


@pytest.fixture()
def scripted(monkeypatch, tmp_path):
    """figures: {model label: validation meta}; a model without figures fails the test when validated."""
    figures: dict[str, dict] = {}
    validated: list[str] = []

    def validate(run, req, tgt):
        label = tgt.meta["label"]
        validated.append(label)
        (tmp_path / "val" / label).mkdir(parents=True, exist_ok=True)  # no logits.npz: no near-tie analysis
        return Hit(tmp_path / "val" / label, figures[label], True)

    monkeypatch.setattr(budget_mod, "stage_validate", validate)
    monkeypatch.setattr(choice, "stage_validate", validate)
    return SimpleNamespace(figures=figures, validated=validated, out=tmp_path)


def _search(scripted, route, first: str, min_agreement=0.99, tuning=None, tune=None, max_drop=None):
    req = Req(Budget(max_drop, min_agreement), QuantOptions(method=first), scripted.out, tune=tune)
    run = SimpleNamespace(req=req)
    if tuning is None:
        st = choice.Chosen(arts(first), budget_mod.stage_validate(run, req, arts(first).tgt), req.quant)
    else:
        st = choice.tuned_or_post_training(run, req, arts(first), arts(f"tuned:{first}"), tuning)
    return budget_mod.meet_budget(run, route, st)


def test_a_budget_the_default_meets_tries_nothing_else(scripted):
    scripted.figures.update(minmax=fig(0.995))
    route = FakeRoute()
    got = _search(scripted, route, "minmax")
    assert got.arts.tgt.meta["label"] == "minmax" and route.calls == []
    assert got.mixed["met_by"] == "post-training quantization (minmax ranges)" and len(got.mixed["search"]) == 1


def test_the_cheapest_step_that_holds_ships_range_methods_then_tuning_then_layers(scripted):
    route = FakeRoute()
    scripted.figures.update(minmax=fig(0.97, 20), percentile=fig(0.98, 21))
    scripted.figures["tuned:percentile"] = fig(0.985, 22)  # tuned from the better post-training model
    scripted.figures.update({"percentile+1": fig(0.987), "percentile+2": fig(0.991)})
    got = _search(scripted, route, "minmax")
    assert route.calls == ["percentile", "tune percentile", "percentile+1", "percentile+2"]
    assert got.arts.tgt.meta["label"] == "percentile+2" and [e["layer"] for e in got.mixed["layers"]] == ["L0", "L1"]
    assert got.plain.meta["label"] == "percentile"  # the latency cost is measured against plain int8
    assert [(s["method"], s["int8_aware"], s["raised_layers"]) for s in got.mixed["search"]] == [
        ("minmax", False, 0), ("percentile", False, 0), ("percentile", True, 0), ("percentile", False, 1),
        ("percentile", False, 2)]
    # the tuned model holds: the search stops there, and says so
    scripted.figures["tuned:percentile"] = fig(0.992)
    got = _search(scripted, FakeRoute(), "minmax")
    assert got.tuned and got.mixed["met_by"].startswith("INT8-aware fine-tuning (percentile ranges")


def test_a_budget_nothing_meets_fails_naming_what_was_tried(scripted):
    scripted.figures.update(minmax=fig(0.9), percentile=fig(0.91), **{"tuned:percentile": fig(0.92)},
                            **{f"percentile+{k}": fig(0.93) for k in (1, 2, 3)})
    with pytest.raises(BuildError, match=r"not met .* tried 6 models, best 93\.00 % agreement"):
        _search(scripted, FakeRoute(), "minmax")
    report = json.loads((scripted.out / "lite0-fake-int8.budget-not-met.json").read_text())
    assert len(report["search"]) == 6 and report["raised_to"] == "fp16"


def test_int8_aware_that_misses_the_budget_ships_the_post_training_model_that_meets_it(scripted):
    """--int8-aware: the tuned model ships on validation (more agreement) but misses a --max-drop budget that the
    post-training model it came from meets: that model ships, and no other range, tuning or layer is tried."""
    route = FakeRoute()
    scripted.figures.update(minmax=fig(0.9867, drop=0.33), **{"tuned:minmax": fig(0.99, drop=0.67)})
    tune = {"kept": True, "seconds": 2.0}
    got = _search(scripted, route, "minmax", tuning=tune, tune=TuneOptions(), min_agreement=None, max_drop=0.5)
    assert got.arts.tgt.meta["label"] == "minmax" and not got.tuned and route.calls == []
    assert got.mixed["met_by"] == "post-training quantization (minmax ranges)"
    assert [(s["int8_aware"], s["top1_drop_points"]) for s in got.mixed["search"]] == [(True, 0.67), (False, 0.33)]
    assert got.tuning["validation"]["tuned"]["top1_drop_points"] == 0.67  # the record keeps both
    # the other way round: validation prefers the post-training model (more agreement), which misses the budget
    # that the tuned model it beat meets: the tuned model ships, still nothing else is built
    scripted.figures.update(minmax=fig(0.99, drop=0.67), **{"tuned:minmax": fig(0.9867, drop=0.33)})
    got = _search(scripted, route, "minmax", tuning=tune, tune=TuneOptions(), min_agreement=None, max_drop=0.5)
    assert got.tuned and got.arts.tgt.meta["label"] == "tuned:minmax" and route.calls == []
    assert [s["int8_aware"] for s in got.mixed["search"]] == [False, True]
    # where the tuned model meets the budget itself, it ships
    scripted.figures["tuned:minmax"] = fig(0.99, drop=0.0)
    got = _search(scripted, route, "minmax", tuning=tune, tune=TuneOptions(), min_agreement=None, max_drop=0.5)
    assert got.tuned and got.mixed["met_by"].startswith("INT8-aware fine-tuning")


def test_the_tuned_model_ships_only_if_it_scores_as_well_on_validation(scripted):
    req = Req(Budget(min_agreement=0.5), QuantOptions(), scripted.out)
    run = SimpleNamespace(req=req)
    scripted.figures.update(minmax=fig(0.99, 25), **{"tuned:minmax": fig(0.99, 26)})
    st = choice.tuned_or_post_training(run, req, arts("minmax"), arts("tuned:minmax"), {"kept": True})
    assert st.tuned and st.arts.tgt.meta["label"] == "tuned:minmax" and st.base.tgt.meta["label"] == "minmax"
    assert st.tuning["validation"] == {"post_training": {"top1_agreement": 0.99, "top1_drop_points": 0.0,
                                                         "logit_sqnr_db": 25},
                                       "tuned": {"top1_agreement": 0.99, "top1_drop_points": 0.0,
                                                 "logit_sqnr_db": 26}}
    assert st.tuning["decided_on"] == "validation images (300)"
    scripted.figures["tuned:minmax"] = fig(0.9867, 27)  # better held-out SQNR, one more flip on validation
    st = choice.tuned_or_post_training(run, req, arts("minmax"), arts("tuned:minmax"), {"kept": True})
    assert not st.tuned and st.arts.tgt.meta["label"] == "minmax" and st.val.meta["top1_agreement"] == 0.99
    # tuning kept nothing: the post-training model, validated once
    scripted.validated.clear()
    st = choice.tuned_or_post_training(run, req, arts("minmax"), arts("minmax"), {"kept": False})
    assert not st.tuned and scripted.validated == ["minmax"] and "tuned" not in st.tuning["validation"]
