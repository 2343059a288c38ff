"""The op-level writing over random valid models (tests/fuzz/random_graphs.py,
which draws nearly every registry op and attribute value): decompile,
elaborate, the same outputs in float64, and a fixed point."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dlc.api import Model
from dlc.frontend.decompile import decompile, rename_weights

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
from random_graphs import random_spec  # noqa: E402

GROUPS = [list(range(k, k + 8)) for k in range(0, 48, 8)]


@pytest.mark.parametrize("seeds", GROUPS, ids=lambda s: f"{s[0]}-{s[-1]}")
def test_random_models_roundtrip(seeds, tmp_path):
    spec, used = random_spec(seeds)
    src = tmp_path / "random.dln"
    src.write_text(spec)
    m = Model(str(src))
    d = decompile(m.symbolic_graph(), name=m.name)
    out = tmp_path / "decompiled.dln"
    out.write_text(d.text)
    m2 = Model(str(out))
    w = m.init_weights(0)
    inputs = m.random_inputs(0)
    inputs2 = {b.name: inputs[a.name] for a, b in zip(m.graph.inputs, m2.graph.inputs)}
    o1 = m.run(inputs, w, dtype="float64")
    o2 = m2.run(inputs2, rename_weights(d, w, m2.graph), dtype="float64")
    assert list(o1) == list(o2)
    for k in o1:
        np.testing.assert_allclose(o2[k], o1[k], rtol=1e-12, atol=0)
    assert decompile(m2.symbolic_graph(), name=m.name).text == d.text
    # the ops these models use, all written back (the generator's coverage, not a fixed list)
    ops = {op for op, _, _ in used}
    assert len(ops) > 10
