"""Op by op: the cases of the torch lowering test (one node each, float32 and
the integer/bool cases) exported to ONNX and run on onnxruntime against the
NumPy interpreter, with an explicit list of the cases that do not export or
differ, each with its reason."""
from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import onnx
import pytest

from export_util import session

pytest.importorskip("torch")

from dlc.backends.numpy.interpreter import Interpreter  # noqa: E402
from dlc.backends.onnx import export_graph  # noqa: E402

_PATH = os.path.join(os.path.dirname(__file__), "..", "backends", "torch", "test_lowering.py")
_spec = importlib.util.spec_from_file_location("torch_lowering_cases", _PATH)
cases = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = cases          # its dataclasses look their module up
_spec.loader.exec_module(cases)

# case id prefix -> why it does not export, or differs on onnxruntime
EXPECTED = {
    "cast-bfloat16": "onnxruntime's Python binding has no bfloat16 arrays to return",
    "adaptive_max_pool2d_indices": "no ONNX mapping (test_export_coverage.WITHOUT_MAPPING)",
    "batch_norm-train-nostats": "without running statistics the NumPy kernel returns 0-d placeholders where "
                                "the op's type says (C,); the export returns the batch statistics, shape (C,)",
    "local_response_norm-3d-even": "onnxruntime's LRN takes odd sizes only",
    "local_response_norm-5d": "onnxruntime's LRN takes 4-D inputs only",
    "lstm-proj": "ONNX's LSTM has no output projection (proj_size): a located DlcError",
}


def _params():
    seen = set()
    for c in cases.CASES:
        dt = np.float32 if c.floating else np.float64
        reason = next((r for k, r in EXPECTED.items() if c.id == k or c.id.startswith(k + "-")), None)
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        if c.op in seen:          # the default run: the first case of each op; --runslow: all of them
            marks.append(pytest.mark.slow)
        seen.add(c.op)
        yield pytest.param(c, dt, id=c.id, marks=marks)


@pytest.mark.parametrize("c, dt", list(_params()))
def test_op_exports_and_matches_numpy(c, dt):
    arrays = cases.make_arrays(c, dt)
    g = cases.one_node_graph(c.op, arrays, c.attrs)
    present = [a for a in arrays if a is not None]
    feed = {v.name: a for v, a in zip(g.inputs, present)}
    want, _ = Interpreter(g).run(feed, {})
    proto = export_graph(g, {})
    onnx.checker.check_model(proto, full_check=True)
    got = session(proto).run(None, feed)
    for i, name in enumerate(g.output_names):
        cases.assert_close(got[i], want[name], f"{c.id}[{i}]", c.tol)

