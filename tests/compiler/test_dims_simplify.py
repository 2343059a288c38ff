"""Dimension arithmetic that simplifies: floor divisions are kept in a canonical
form, so `(H - 2)//2 + 1` (a 2x2 max pool) is `H / 2` and types written with
either formula check while H is symbolic."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dlc
from dlc.compiler.dims import Dim, floordiv
from dlc.errors import DlcError
from dlc.frontend.modules import clear_cache

H, W = Dim.symbol("H"), Dim.symbol("W")


@pytest.mark.parametrize("a, b", [
    (floordiv(H - 2, 2) + 1, floordiv(H, 2)),                               # max pool 2x2
    (floordiv(H + 2 - 3, 2) + 1, floordiv(H + 1, 2)),                       # 3x3 conv, stride 2, pad 1
    (floordiv(floordiv(H + 1, 2) + 2 - 3, 2) + 1, floordiv(H + 3, 4)),      # two of them
    (floordiv(floordiv(H, 2), 2), floordiv(H, 4)),
    (floordiv(2 * H + 2, 4), floordiv(H + 1, 2)),                           # common factor
    (floordiv(3 * H + 1, 2), H + floordiv(H + 1, 2)),                       # coefficients mod 2
    (floordiv(2 * W + H + 5, 2), W + 2 + floordiv(H + 1, 2)),
    (floordiv(H, -2), floordiv(-H, 2)),
])
def test_equal_formulas_are_one_dimension(a, b):
    assert a == b and hash(a) == hash(b) and str(a) == str(b)


def test_printed_form():
    assert str(floordiv(H - 2, 2) + 1) == "(H)//2"
    assert str(floordiv(H - 1, 2) + 1) == "(H + 1)//2"


_lin = st.tuples(st.integers(-6, 6), st.integers(-6, 6), st.integers(-20, 20))
_den = st.integers(-7, 7).filter(lambda d: d != 0)


@settings(max_examples=300, deadline=None)
@given(_lin, _den, st.integers(-4, 4), st.integers(-9, 9), _den)
def test_canonical_form_keeps_the_value(lin, d1, k, c, d2):
    """((a*H + b*W + c0) // d1 + k*W + c) // d2 equals Python's integer arithmetic everywhere."""
    a, b, c0 = lin
    e = floordiv(floordiv(a * H + b * W + c0, d1) + k * W + c, d2)
    for hv in range(-9, 10, 2):
        for wv in range(-5, 6):
            want = ((a * hv + b * wv + c0) // d1 + k * wv + c) // d2
            got = e.evaluate({"H": hv, "W": wv}) if isinstance(e, Dim) else e
            assert got == want, (str(e), hv, wv)


def _load(tmp_path, text):
    clear_cache()
    p = tmp_path / "m.dln"
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return dlc.load(p)


def test_result_types_with_pooling_formulas_check_while_symbolic(tmp_path):
    m = _load(tmp_path, """
        block Down()(x: f32[N, C, H, W]) -> f32[N, C, H / 2, (W - 2) // 2 + 1] {
            return maxpool2d(x, 2)
        }
        model P(x: f32[N, 3, H, W]) -> f32[N, 8, (H + 2) / 4, (W - 2) // 4 + 1] {
            example N = 1, H = 17, W = 30
            y = Down()(x)
            return conv2d(y, 8, kernel=3, stride=2, padding=1)
        }
    """)
    h, w = m.graph.outputs[0].type.shape[2:]
    assert isinstance(h, Dim) and str(h) == "(H + 2)//4" and str(w) == "(W + 2)//4"
    out = m.run()["output"]
    assert out.shape == (1, 8, (17 // 2 + 1) // 2, (30 // 2 + 1) // 2)


def test_a_wrong_formula_is_still_an_error(tmp_path):
    with pytest.raises(DlcError) as ei:
        _load(tmp_path, """
            model P(x: f32[N, 3, H, W]) -> f32[N, 3, (H + 1) / 2, W / 2] {
                return maxpool2d(x, 2)
            }
        """)
    assert "does not match" in ei.value.hint


def test_reshape_with_a_pooled_size(tmp_path):
    m = _load(tmp_path, """
        model R(x: f32[N, 4, T]) {
            example N = 2, T = 9
            y = maxpool1d(x, 2)
            return reshape(y, N, 4 * (T / 2))
        }
    """)
    assert str(m.graph.outputs[0].type.shape[1]) == "4*(T)//2"
    x = np.random.default_rng(0).standard_normal((2, 4, 9)).astype(np.float32)
    want = x[:, :, :8].reshape(2, 4, 4, 2).max(-1).reshape(2, 16)
    np.testing.assert_allclose(m.run({"x": x})["output"], want)
