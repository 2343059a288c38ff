"""dlc's layout pass on the TVM backend: the NHWC graph compiles without
TVM's ConvertLayout, matches the NumPy reference, and gives the CPU
schedules the same kernels ConvertLayout gave them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tvm")

import dlc
from dlc.backends.tvm import pipeline
from dlc.backends.tvm.compile import compile_graph, lower_model

pytestmark = pytest.mark.tvm

ROOT = Path(__file__).resolve().parents[3]
UNET = str(ROOT / "tests" / "compiler" / "passes" / "specs" / "unet_tiny.dln")


def _graph(m, bind, layout: bool):
    return m.optimize(level=2, disable=() if layout else ("layout",)).compiled_graph(bind=bind, backend="tvm")


@pytest.mark.parametrize("spec", [UNET, str(ROOT / "specs" / "digits_cnn.dln")], ids=["unet_tiny", "digits_cnn"])
def test_nhwc_graph_compiles_without_convert_layout_and_matches_numpy(spec):
    m = dlc.load(spec)
    bind = {"N": 2}
    g = _graph(m, bind, layout=True)
    assert any(n.attrs.get("layout") == "NHWC" for n in g.nodes)
    assert not pipeline.needs_convert_layout(lower_model(g, bind, None).mod)
    assert pipeline.needs_convert_layout(lower_model(_graph(m, bind, layout=False), bind, None).mod)
    weights, inputs = m.init_weights(0), m.random_inputs(0, bind)
    got = compile_graph(g, "cpu", bind=bind).runner().set_weights(weights).run(inputs, seed=0)
    for name, ref in m.optimize(level=0).run(inputs, weights, bind=bind).items():
        err = np.abs(got[name] - ref).max() / np.abs(ref).max()
        assert err < 1e-4, f"{name}: max rel error {err:.3g}"


def _main_kernels(mod):
    """The PrimFuncs ``main`` calls, in call order, as structural hashes."""
    import re

    import tvm
    import tvm_ffi
    funcs = {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    called = re.findall(r"call_tir\((?:cls\.)?([A-Za-z_0-9]+)", mod["main"].script())
    assert called
    return [tvm_ffi.structural_hash(funcs[name], map_free_vars=True) for name in called]


def test_main_is_the_module_convert_layout_made():
    """The speed argument: after the pipeline, ``main`` of the dlc-layout
    module and of the ConvertLayout one are structurally equal (same kernels,
    same calls); only the weight transforms differ in how they are written."""
    import tvm_ffi
    m = dlc.load(str(ROOT / "specs" / "digits_cnn.dln"))
    bind = {"N": 1}
    target = pipeline.as_target("llvm")
    mods = [pipeline.prepare(lower_model(_graph(m, bind, layout), bind, None).mod, target) for layout in (True, False)]
    assert tvm_ffi.structural_equal(mods[0]["main"], mods[1]["main"], map_free_vars=True)
    assert _main_kernels(mods[0]) == _main_kernels(mods[1])
