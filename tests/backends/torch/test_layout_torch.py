"""``layout="NHWC"`` ops on the torch backend: the generated function runs
them between permutes and matches the NumPy reference."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

import dlc
from dlc.backends import get_backend
from dlc.compiler.passes import PipelineOptions, run_pipeline

ROOT = Path(__file__).resolve().parents[3]
UNET = str(ROOT / "tests" / "compiler" / "passes" / "specs" / "unet_tiny.dln")


@pytest.mark.parametrize("spec", [UNET, str(ROOT / "specs" / "mobilenet_v2.dln")], ids=["unet_tiny", "mobilenet_v2"])
def test_nhwc_graph_on_torch_matches_numpy(spec):
    import numpy as np
    m = dlc.load(spec)
    bind = {"N": 2}
    g = m._elaborate("eval", bind)
    # the TVM CPU layout, run on torch: every spatial op NHWC
    g, _, ctx = run_pipeline(g, PipelineOptions(passes=("layout",)), backend="tvm", dims=bind)
    assert ctx.stats["layout.converted"] > 0
    weights, inputs = m.init_weights(0), m.random_inputs(0, bind)
    got, _ = get_backend("torch").run(g, inputs, weights, mode="eval", bind=bind)
    want = m.optimize(level=0).run(inputs, weights, bind=bind)
    for name, ref in want.items():
        err = float(np.abs(np.asarray(got[name]) - ref).max() / np.abs(ref).max())
        assert err < 1e-5, f"{name}: max rel error {err:.3g}"


@pytest.mark.parametrize("n, channels_last", [(1, False), (32, True)])
def test_bench_runs_channels_last_only_for_large_conv_batches(n, channels_last):
    from dlc.backends.torch.backend import BACKEND, CHANNELS_LAST_MIN_BATCH
    assert (n >= CHANNELS_LAST_MIN_BATCH) == channels_last
    m = dlc.load(str(ROOT / "specs" / "digits_cnn.dln"))
    bind = {"N": n}
    g = m.compiled_graph(bind=bind, backend="torch")
    times, info = BACKEND.bench(g, m.random_inputs(0, bind), m.init_weights(0), repeat=2, warmup=1,
                                module_graph=m.module_graph())
    assert len(times) == 2 and ("channels_last" in info["where"]) == channels_last


def test_mlp_never_runs_channels_last():
    from dlc.backends.torch.backend import BACKEND
    m = dlc.load(str(ROOT / "specs" / "mlp.dln"))
    bind = {"N": 64}
    _, info = BACKEND.bench(m.compiled_graph(bind=bind, backend="torch"), m.random_inputs(0, bind),
                            m.init_weights(0), repeat=1, warmup=0, module_graph=m.module_graph())
    assert "channels_last" not in info["where"]
