"""Issue 11's TVM bug: a conv2d followed by a conv_transpose2d failed to
compile, because ConvertLayout carried the conv2d's NHWC layout into the
transposed convolution (``R.nn.conv2d_transpose(..., data_layout="NHWC",
kernel_layout="IOHW")``), which TOPI cannot legalize.  The pipeline now pins
conv2d_transpose to NCHW/IOHW, so transposes go around it; the result must
match the NumPy reference."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

from dlc.api import Model
from dlc.backends.tvm.compile import compile_graph

pytestmark = pytest.mark.tvm

SPEC = """
model Up(x: f32[N, 3, 8, 8]) -> f32[N, 4, 16, 16] {
    example N = 2
    return conv2d(x, 8, kernel=3, padding=1) |> relu |> conv_transpose2d(4, kernel=2, stride=2) |> conv2d(4, kernel=1)
}
"""


def test_conv2d_then_conv_transpose2d_compiles_and_matches_numpy(tmp_path):
    p = tmp_path / "up.dln"
    p.write_text(SPEC)
    m = Model(str(p))
    bind = {"N": 2}
    compiled = compile_graph(m.compiled_graph(bind=bind, backend="tvm"), "cpu", bind=bind)
    weights = m.init_weights(0)
    inputs = m.random_inputs(0, bind=bind)
    got = compiled.runner().set_weights(weights).run(inputs, seed=0)["output"]
    want = m.run(inputs, weights, bind=bind)["output"]
    assert got.shape == want.shape == (2, 4, 16, 16)
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 1e-4, f"max rel error {err:.3g}"
