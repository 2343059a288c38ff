"""ONNX Einsum imported and run on NumPy and torch against numpy.einsum: matmuls, several
operands, diagonals, sums, ellipsis with broadcasting, implicit outputs; located errors."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper

from dlc.errors import DlcError
from dlc.frontend.onnx import import_onnx
from dlc.onnx_import import run_imported


def _model(eq: str, shapes):
    names = [f"x{i}" for i in range(len(shapes))]
    node = helper.make_node("Einsum", names, ["y"], name="es", equation=eq)
    vis = [helper.make_tensor_value_info(n, TensorProto.DOUBLE, s) for n, s in zip(names, shapes)]
    g = helper.make_graph([node], "g", vis, [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("eq,shapes", [
    ("bhid,bhjd->bhij", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("i,j->ij", [(3,), (4,)]),
    ("i,i", [(5,), (5,)]),
    ("ii", [(4, 4)]),
    ("...ii->...i", [(3, 5, 5)]),
    ("iij->j", [(3, 3, 2)]),
    ("iii->i", [(3, 3, 3)]),
    ("ij->", [(3, 4)]),
    ("->", [()]),
    ("...ij,...jk", [(2, 1, 3, 4), (5, 4, 2)]),          # ellipsis batch axes broadcast (1 vs 5)
    ("b...i,bi->b...", [(2, 3, 4, 5), (2, 5)]),
    ("ab,cd,bd->ac", [(2, 3), (4, 5), (3, 5)]),
    ("ijk->kji", [(2, 3, 4)]),
])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_einsum_matches_numpy(eq, shapes, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    rng = np.random.default_rng(len(eq))
    xs = [rng.standard_normal(s) for s in shapes]
    imp = import_onnx(_model(eq, shapes))
    got = run_imported(imp, {f"x{i}": x for i, x in enumerate(xs)}, backend)["y"]
    want = np.einsum(eq, *xs)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_two_operand_contraction_is_one_matmul():
    imp = import_onnx(_model("bhid,bhjd->bhij", [(2, 3, 4, 5), (2, 3, 6, 5)]))
    assert [n.op.name for n in imp.graph.nodes].count("matmul") == 1


@pytest.mark.parametrize("eq,shapes,match", [
    ("ij,jk->ik", [(2, 3), (4, 5)], "label 'j' has sizes 3 and 4"),
    ("ij->ik", [(2, 3)], "names one no operand has"),
    ("ijk->i", [(2, 3)], "3 labels for an operand of rank 2"),
    ("ij,jk->ik", [(2, 3)], "names 2 operands, the node has 1"),
    ("i1->i", [(2, 3)], "not a term of letters"),
])
def test_bad_equations_get_a_located_error(eq, shapes, match):
    with pytest.raises(DlcError, match=match) as e:
        import_onnx(_model(eq, shapes))
    assert "node 0 'es' (Einsum)" in e.value.message and "Einsum" in e.value.message
