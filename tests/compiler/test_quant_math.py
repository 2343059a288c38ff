"""compiler/quant: range estimators on distributions whose answer is known,
the pinned ranges -> scales/zero points, QuantPlan's JSON and quant_sites."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dlc.compiler.quant import (QuantPlan, activation_qparams, fixed_point_multipliers, make_observer,
                                quant_sites, weight_scales)
from dlc.compiler.quant.calibrate import BINS, _Histogram, kl_divergence_at, kl_threshold_bin
from dlc.errors import DlcError


def _feed(obs, x, parts=5):
    for chunk in np.array_split(x, parts):
        obs.update(chunk)
    return obs


# ---- observers ------------------------------------------------------------------------------

def test_minmax_is_the_exact_extremes_across_batches():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2.0, 7.0, 100_000)
    assert _feed(make_observer("minmax"), x).range() == (x.min(), x.max())


def test_uniform_percentile_is_its_quantile():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 10.0, 400_000)
    lo, hi = _feed(make_observer("percentile", percentile=99.0), x).range()
    assert lo == x.min()                          # non-negative data: the lower end is the data's
    assert abs(hi - 9.9) < 0.02                   # the 99th percentile of U(0, 10), to a bin (10/2048)
    lo, hi = _feed(make_observer("percentile", percentile=90.0, tails="both"), x - 5).range()
    assert abs(lo + 4.0) < 0.02 and abs(hi - 4.0) < 0.02    # U(-5, 5): the 10th and 90th percentiles


def test_uniform_entropy_keeps_the_whole_range():
    # no outliers: clipping only loses information, so the KL optimum is (near) the maximum
    x = np.random.default_rng(2).uniform(-1.0, 1.0, 200_000)
    lo, hi = _feed(make_observer("entropy"), x).range()
    assert hi > 0.95 and lo < -0.95


def test_gaussian_outliers_are_clipped_by_percentile_and_entropy_not_by_minmax():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(300_000)
    x[:20] = rng.choice([-1, 1], 20) * rng.uniform(40, 60, 20)      # 20 outliers at 40..60 sigma
    mn = _feed(make_observer("minmax"), x).range()
    pc = _feed(make_observer("percentile"), x).range()
    en = _feed(make_observer("entropy"), x).range()
    assert mn[1] > 40 and mn[0] < -40
    # the 99.99th percentile of |N(0, 1)| is 3.89; a bin is 60/2048 wide
    want = np.percentile(np.abs(x), 99.99)            # ~4.1: the 20 outliers are part of the top 0.01%
    width = 60.0 / 2048
    assert abs(pc[1] - want) <= 2 * width and pc[0] == -pc[1] and pc[1] < 5
    assert 2.0 < en[1] < 8.0 and -8.0 < en[0] < -2.0


def test_kl_optimum_of_a_histogram_with_a_computable_answer():
    # mass only in the first 128 bins, all bins distinct: at i = 128 the 128 levels hold P exactly
    # (KL = 0); every wider threshold merges unequal bins (KL > 0); narrower ones are not searched
    counts = np.zeros(BINS)
    counts[:128] = np.arange(1, 129)
    assert kl_divergence_at(counts, 128) == 0.0
    assert all(kl_divergence_at(counts, i) > 0 for i in (256, 512, 2048))
    assert kl_threshold_bin(counts) == 128
    # a tail beyond the threshold makes KL(128) > 0 (folded into the last bin)
    counts[1000] = 50
    assert kl_divergence_at(counts, 128) > 0


def test_kl_divergence_matches_a_direct_computation():
    rng = np.random.default_rng(4)
    counts = rng.integers(0, 100, BINS).astype(float)
    counts[rng.integers(0, BINS, 300)] = 0
    i = 700
    p = counts[:i].copy()
    p[-1] += counts[i:].sum()
    per = i // 128
    q = np.zeros(i)
    for j in range(128):
        a, b = j * per, (j + 1) * per if j < 127 else i
        nz = counts[a:b] != 0
        if nz.any():
            q[a:b][nz] = counts[a:b].sum() / nz.sum()
    p, q = p / p.sum(), q / q.sum()
    p, q = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    p, q = p / p.sum(), q / q.sum()
    assert math.isclose(kl_divergence_at(counts, i), float(np.sum(p * np.log(p / q))), rel_tol=1e-12)


def test_streaming_histogram_rebins_exactly():
    rng = np.random.default_rng(5)
    small, big = rng.uniform(0, 1.0, 50_000), rng.uniform(0, 7.5, 50_000)
    h = _Histogram(signed=False)
    h.add(small)
    h.add(big)                                   # R doubles 1 -> 8 (three times): bins merge by 8
    assert h.bound == small.max() * 8
    # the same as one histogram of everything over the final range, but for the first batch's
    # maximum: np.histogram put it in the first range's last bin (its right edge is inclusive),
    # which merged into bin 2047 // 8, where the final range's edge would start bin 256
    rest = np.concatenate([np.delete(small, small.argmax()), big])
    want, _ = np.histogram(rest, bins=BINS, range=(0, h.bound))
    want[2047 // 8] += 1
    assert np.array_equal(h.counts, want)
    s = _Histogram(signed=True)
    s.add(np.array([-1.0, 1.0]))
    s.add(big - 3.75)                           # R: 1 -> 4, the old bins land in the middle quarter
    want, _ = np.histogram(big - 3.75, bins=BINS, range=(-4.0, 4.0))
    want[768] += 1                              # -1: the first bin of the old range
    want[(768 + 2047 // 4)] += 1                # +1: its inclusive last bin
    assert s.bound == 4.0 and np.array_equal(s.counts, want)


def test_observer_errors():
    with pytest.raises(DlcError, match="no data"):
        make_observer("minmax").range()
    with pytest.raises(DlcError, match="non-finite"):
        make_observer("entropy").update(np.array([1.0, np.nan]))
    with pytest.raises(DlcError, match="unknown calibration method"):
        make_observer("kl")


# ---- scales ---------------------------------------------------------------------------------

def test_activation_qparams_follow_the_pinned_formula():
    s, zp = activation_qparams(-1.0, 3.0)
    assert s == np.float32(4.0 / 255) and zp == round(1.0 / float(s)) == 64
    s, zp = activation_qparams(2.0, 5.0)          # the range always holds 0: lo -> 0
    assert s == np.float32(5.0 / 255) and zp == 0
    s, zp = activation_qparams(-6.0, -1.0)        # hi -> 0: zero point at the top
    assert zp == 255
    assert activation_qparams(0.0, 0.0) == (np.float32(1.0), 0)
    # the range's ends are representable: dequantize(quantize(lo)) == lo to a step
    s, zp = activation_qparams(-0.37, 11.2)
    assert abs((0 - zp) * float(s) + 0.37) <= float(s) and abs((255 - zp) * float(s) - 11.2) <= float(s)


def test_weight_scales_per_channel_and_per_tensor():
    w = np.array([[1.0, -2.54], [0.0, 0.0], [0.127, 0.05]], np.float32)
    assert weight_scales(w, True).tolist() == [np.float32(2.54) / np.float32(127), 1.0, np.float32(0.127) / np.float32(127)]
    assert weight_scales(w, False) == np.float32(2.54) / np.float32(127)


def test_fixed_point_multipliers():
    mult, shift = fixed_point_multipliers(np.array([0.75, 0.0, 2.0 ** -32, 3.0]))
    assert int(mult[0]) == 3 << 29 and int(shift[0]) == 31      # 0.75 = 0.75 * 2^0
    assert (int(mult[1]), int(shift[1])) == (0, 31)
    assert (int(mult[2]), int(shift[2])) == (1 << 30, 62)       # 2^-32 = 0.5 * 2^-31: the last valid shift
    assert int(mult[3]) == 3 << 29 and int(shift[3]) == 29      # 3 = 0.75 * 2^2
    with pytest.raises(ValueError, match=r"outside \[1, 62\]"):
        fixed_point_multipliers(np.array([2.0 ** -33]))
    with pytest.raises(ValueError, match=r"outside \[1, 62\]"):
        fixed_point_multipliers(np.array([2.0 ** 31]))


# ---- the plan -------------------------------------------------------------------------------

def test_plan_json_round_trip_is_exact():
    plan = QuantPlan(method="entropy", per_channel=False,
                     ranges={"conv1:in": (-0.1 / 3, 1 / 7), "fc:out": (0.0, 12.345678901234567)},
                     float_layers={"fc"})
    back = QuantPlan.from_json(plan.to_json())
    assert back == plan and back.ranges["conv1:in"] == (-0.1 / 3, 1 / 7)


@pytest.mark.parametrize("bad, match", [
    ('{"method": "kl"}', "unknown calibration method"),
    ('{"ranges": {"conv1": [0, 1]}}', "bad range key"),
    ('{"ranges": {"conv1:in": [2, 1]}}', "lo <= hi"),
    ('{"ranges": {"conv1:in": [0, Infinity]}}', "finite"),
    ('{"version": 9}', "version"),
    ('{"colour": 1}', "unknown fields"),
    ('[1, 2', "not valid JSON"),
])
def test_bad_plans_are_clear_errors(bad, match):
    with pytest.raises(DlcError, match=match):
        QuantPlan.from_json(bad)


# ---- sites ----------------------------------------------------------------------------------

def test_quant_sites_of_resnet18_after_batchnorm_folding():
    import dlc
    from dlc.compiler.passes import PipelineOptions
    from dlc.compiler.passes.quantize import calibration_graph
    g = dlc.load("specs/resnet18.dln")._elaborate("eval", {"N": 1})
    cg = calibration_graph(g, PipelineOptions(level=0))      # runs fold_batchnorm even at -O0
    assert not any(n.op.name == "batch_norm" for n in cg.nodes)
    sites = {s.name: s for s in quant_sites(cg)}
    assert len(sites) == 21                     # 20 convolutions (3 downsample) + fc
    assert sites["fc"].kind == "dense" and sites["conv1"].kind == "conv2d"
    c1, c2 = sites["layer1.0.conv1"], sites["layer1.0.conv2"]
    assert c1.relu is not None and c1.output is c1.relu.outputs[0]     # conv -> (bn) -> relu
    assert c2.relu is None and c2.output is c2.node.outputs[0]          # conv -> (bn) -> + residual
    assert c2.in_key == "layer1.0.conv2:in" and c2.out_key == "layer1.0.conv2:out"
    assert c2.input is c1.output
