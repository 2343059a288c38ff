from dlc.compiler.dims import Dim, floordiv, known_equal, prod
from dlc.compiler.types import DType, TensorType

N, T = Dim.symbol("N"), Dim.symbol("T")


def test_canonical_form_makes_equal_expressions_equal():
    assert N * 2 + N == N * 3
    assert (N + 1) * (N + 1) == N * N + N * 2 + 1
    assert N * T == T * N
    assert N - N == 0


def test_exact_division_stays_polynomial():
    assert floordiv(N * 4 + 8, 4) == N + 2
    assert floordiv(N * T * 6, N * 3) == T * 2


def test_inexact_division_is_an_opaque_floor_atom():
    d = floordiv(N + 1, 2)
    assert isinstance(d, Dim) and not d.is_const
    assert d.evaluate({"N": 6}) == 3
    assert d.evaluate({"N": 7}) == 4
    # the conv output formula with symbolic height
    H = Dim.symbol("H")
    out = floordiv(H + 2 * 1 - 3, 2) + 1
    assert out.evaluate({"H": 224}) == 112


def test_known_equal_is_three_valued():
    assert known_equal(N + 1, N + 1) is True
    assert known_equal(N + 1, N) is False
    assert known_equal(N, T) is None
    assert known_equal(3, 3) is True


def test_tensor_type_printing_and_numel():
    t = TensorType(DType.f32, (N, 3, 224, 224))
    assert str(t) == "f32[N, 3, 224, 224]"
    assert t.numel() == N * 150528
    assert TensorType(DType.i64, (2, 3)).numel() == 6
    assert prod([2, N, 3]) == N * 6
