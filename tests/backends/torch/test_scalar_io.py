"""The torch backend keeps 0-d inputs and weights 0-d (np.ascontiguousarray made them (1,), so a
graph returning its scalar input gave shape (1,)), and non-contiguous arrays run as their values."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper

from dlc.backends.torch.training import _as_tensor
from dlc.frontend.onnx import import_onnx
from dlc.onnx_import import run_imported


def _model(op: str, shape, **attrs):
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"], **attrs)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.DOUBLE, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op", ["Identity", "Neg"])
def test_scalar_input_stays_a_scalar(op):
    out = run_imported(import_onnx(_model(op, [])), {"x": np.array(2.5)}, "torch")["y"]
    assert out.shape == () and float(out) == (2.5 if op == "Identity" else -2.5)


def test_as_tensor_keeps_shapes_and_values():
    assert tuple(_as_tensor(np.array(3.0)).shape) == ()
    assert tuple(_as_tensor(np.float32(1.5)).shape) == ()
    a = np.arange(12.0).reshape(3, 4).T                  # not C-contiguous: copied in C order
    t = _as_tensor(a)
    assert t.is_contiguous() and np.array_equal(t.numpy(), a)
    b = np.arange(4.0)
    assert _as_tensor(b).data_ptr() == b.ctypes.data     # contiguous: shared, not copied
