import json

import pytest

from edgekit.core.arch import count_macs, same_pads, stages
from edgekit.core.variants import VARIANTS, UnknownVariant, get_variant, resolve_variants

from .conftest import run_cli

# Parameter counts measured on the timm port (model card / shared docs), to the unit.
EXACT = {"lite0": 4_652_008, "lite1": 5_416_680, "lite2": 6_092_072}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_param_count_within_0_1_percent_of_card(name):
    from edgekit.models.network import count_params, create_model

    v = VARIANTS[name]
    n = count_params(create_model(v))
    assert abs(n - v.card_params) / v.card_params < 1e-3, (name, n, v.card_params)
    if name in EXACT:
        assert n == EXACT[name]


def test_depth_scaling_keeps_first_and_last_stage():
    for v in VARIANTS.values():
        st = stages(v)
        assert len(st[0]) == 1 and len(st[-1]) == 1
    assert [len(s) for s in stages(VARIANTS["lite4"])] == [1, 4, 4, 6, 6, 8, 1]


def test_tf_same_padding_is_asymmetric_on_stride_2():
    assert same_pads(224, 3, 2) == (0, 1)
    assert same_pads(225, 3, 2) == (1, 1)
    assert same_pads(112, 5, 1) == (2, 2)


def test_macs_grow_with_variant_and_lite0_is_about_0_39_gmac():
    macs = [count_macs(v) for v in VARIANTS.values()]
    assert macs == sorted(macs)
    assert 0.38e9 < macs[0] < 0.40e9


def test_resize_rule_follows_card():
    assert [v.resize_size for v in VARIANTS.values()] == [256, 272, 292, 332, 413]


def test_unknown_variant_lists_valid_ones():
    with pytest.raises(UnknownVariant, match="lite0, lite1, lite2, lite3, lite4"):
        get_variant("lite9")
    assert len(resolve_variants("all")) == 5


def test_variants_cli_json():
    r = run_cli("variants", "--json", check=True)
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == list(VARIANTS)
    assert rows[0]["macs"] == count_macs(VARIANTS["lite0"])
    assert rows[3]["weights"]["package"] is None
    r = run_cli("variants", check=True)
    assert "lite4" in r.stdout and "MACs (ours)" in r.stdout
