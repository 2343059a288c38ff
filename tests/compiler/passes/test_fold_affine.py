"""fold_affine: a per-channel scale/shift folded into the adjacent conv, only where exact.

Every case runs -O0 against the pass in float64 with random per-channel
parameters (see bnfold_util) and asserts from the IR what was folded; the
padded-shift case asserts it was NOT folded (and still agrees)."""
from __future__ import annotations

import pytest

from bnfold_util import check_folds, count_op, write_spec

SPEC = """
model M(x: f32[N, 4, 9, 9]) -> f32[N, {cout}, {hw}] {{
    example N = 2
    param s: f32[4, 1, 1] = ones
    param t: f32[1, 4, 1, 1] = zeros
    param u: f32[{cout}, 1, 1] = ones
    param k: f32[] = ones
    {body}
}}
"""


def _spec(tmp_path, body, cout=6, hw="7, 7"):
    return write_spec(tmp_path, SPEC.format(body=body, cout=cout, hw=hw))


FOLDED = {
    # before the conv: a scale always folds (grouped: each group's own input channels)
    "scale_before_grouped_padded": ("return conv2d(x * s, 6, kernel=3, padding=1, groups=2)", "9, 9",
                                    {"scale_before_conv": 1}),
    "scale_before_depthwise": ("return conv2d(s * x, 4, kernel=3, groups=4, bias=false)", "7, 7",
                               {"scale_before_conv": 1}, 4),
    "scalar_scale_before": ("return conv2d(x * k, 6, kernel=3)", "7, 7", {"scale_before_conv": 1}),
    # a shift folds into the bias only without padding
    "shift_before_unpadded_grouped": ("return conv2d(x + t, 6, kernel=3, groups=2)", "7, 7",
                                      {"shift_before_conv": 1}),
    "shift_before_unpadded_nobias": ("return conv2d(x - t, 6, kernel=3, stride=2, dilation=2, bias=false)",
                                     "3, 3", {"shift_before_conv": 1}),
    "shift_then_scale_before": ("return conv2d((x + t) * s, 6, kernel=3)", "7, 7",
                                {"scale_before_conv": 1, "shift_before_conv": 1}),
    # after the conv: both always fold
    "scale_shift_after_padded": ("return conv2d(x, 6, kernel=3, padding=1, groups=2) * u + u", "9, 9",
                                 {"scale_after_conv": 1, "shift_after_conv": 1}),
    "shift_after_nobias": ("return conv2d(x, 6, kernel=3, bias=false) - u", "7, 7", {"shift_after_conv": 1}),
    "scale_after_nobias": ("return u * conv2d(x, 6, kernel=3, bias=false)", "7, 7", {"scale_after_conv": 1}),
    "conv_transpose_scale_before_and_after":
        ("return conv_transpose2d(x * s, 6, kernel=2, stride=2, groups=2) * u", "18, 18",
         {"scale_before_conv": 1, "scale_after_conv": 1}),
}


@pytest.mark.parametrize("case", list(FOLDED))
def test_folds(tmp_path, case):
    body, hw, expect, *cout = FOLDED[case]
    spec = _spec(tmp_path, body, cout[0] if cout else 6, hw)
    before, after, st = check_folds(spec, ["fold_affine"], grads=True)
    assert st == {f"fold_affine.{k}": v for k, v in expect.items()}
    # the folded scale/shift ops are gone: the conv reads x itself and ends the graph
    conv = next(ln for ln in after.splitlines() if "conv" in ln and "= conv" in ln)
    assert "(x, " in conv
    assert after.splitlines()[-2].lstrip().startswith("return " + conv.split("=")[0].strip())


def test_padded_shift_is_not_folded(tmp_path):
    """conv(x + t) with zero padding: the border windows read padded zeros,
    not t, so adding sum(W * t) to the bias would be wrong there."""
    spec = _spec(tmp_path, "return conv2d(x + t, 6, kernel=3, padding=1)", hw="9, 9")
    before, after, st = check_folds(spec, ["fold_affine"])
    assert st == {}
    assert count_op(after, "add") == 1 and "= add(x, @t)" in after


def test_padded_shift_would_be_wrong(tmp_path, monkeypatch):
    """The reason for the rule: with the padding check switched off the shift
    folds, and the outputs differ from -O0 (so the test above guards a real
    inexactness, not a missed optimisation)."""
    import dlc.compiler.passes.fold_affine as fa
    monkeypatch.setattr(fa, "pads_are_zero", lambda conv: True)
    spec = _spec(tmp_path, "return conv2d(x + t, 6, kernel=3, padding=1)", hw="9, 9")
    with pytest.raises(AssertionError, match="max \\|diff\\|"):
        check_folds(spec, ["fold_affine"])


NOT_FOLDED = {
    # t varies over space: not per-channel
    "spatial_shift": ("param q: f32[1, 1, 9, 9] = zeros\n    return conv2d(x + q, 6, kernel=3)", "7, 7"),
    # t - x is a negation, not a shift
    "reversed_sub": ("return conv2d(t - x, 6, kernel=3)", "7, 7"),
    # the scaled value is also an output path: it must still be computed
    "scaled_value_reused": ("y = x * s\n    return conv2d(y, 4, kernel=3, padding=1) + y", "9, 9"),
    # the scale depends on the input
    "dynamic_scale": ("return conv2d(x * mean(x, axis=(2, 3), keepdims=true), 6, kernel=3)", "7, 7"),
}


@pytest.mark.parametrize("case", list(NOT_FOLDED))
def test_not_folded(tmp_path, case):
    body, hw = NOT_FOLDED[case]
    spec = _spec(tmp_path, body, 4 if "reused" in case else 6, hw)
    before, after, st = check_folds(spec, ["fold_affine"])
    assert st == {}
    assert before.count("= conv2d(") == after.count("= conv2d(") == 1
    assert count_op(after, "mul") + count_op(after, "add") + count_op(after, "sub") == \
        count_op(before, "mul") + count_op(before, "add") + count_op(before, "sub")


CONV1D = """
model M(x: f32[N, 4, 12]) -> f32[N, 8, 10] {
    example N = 2
    param s: f32[4, 1] = ones
    param t: f32[4, 1] = zeros
    param u: f32[8, 1] = ones
    return (conv1d((x + t) * s, 8, kernel=3, groups=4) + u) * u
}
"""


def test_conv1d_before_and_after(tmp_path):
    spec = write_spec(tmp_path, CONV1D)
    before, after, st = check_folds(spec, ["fold_affine"], grads=True)
    assert st == {"fold_affine.scale_before_conv": 1, "fold_affine.shift_before_conv": 1,
                  "fold_affine.shift_after_conv": 1, "fold_affine.scale_after_conv": 1}
    assert "conv1d(x, " in after


def test_batch_norm_then_affine_then_dce(tmp_path):
    """The passes together (as -O2 runs them): batch norm folded, then a scale after it."""
    spec = write_spec(tmp_path, """
model M(x: f32[N, 3, 8, 8]) -> f32[N, 5, 6, 6] {
    example N = 2
    param u: f32[5, 1, 1] = ones
    return (conv2d(x, 5, kernel=3) |> batchnorm) * u
}
""")
    before, after, st = check_folds(spec, ["fold_batchnorm", "fold_affine", "dce"], grads=True)
    assert st["fold_batchnorm.folded"] == 1 and st["fold_affine.scale_after_conv"] == 1
    assert count_op(after, "batch_norm") == 0 and "conv2d(x, " in after
