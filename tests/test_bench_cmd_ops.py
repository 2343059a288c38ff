"""`dlc bench --ops`: the suite's one-op models have the shapes and FLOP
counts they claim, and a (shrunk) suite is checked then timed on torch and
tvm with GFLOP/s and share of the measured sgemm peak."""
import numpy as np
import pytest

import dlc.bench_ops as bo
from dlc.errors import DlcError


@pytest.mark.parametrize("suite_op", bo.suite_ops("all"), ids=lambda so: f"{so[0]}-{so[1][0]}-{so[1][1]}")
def test_every_suite_entry_builds_with_its_output_shape(suite_op):
    _, op = suite_op
    m = bo.op_model(op)
    assert [tuple(o.shape) for o in m.outputs] == [op[3]]
    assert [tuple(i.shape) for i in m.inputs] == list(op[2].values())


def test_conv_flops_count_two_per_mac():
    *_, out, _body, flops = bo._conv(64, 128, 56, 3, 2)
    assert out == (1, 128, 28, 28) and flops == 2 * 128 * 28 * 28 * 64 * 9
    dw = bo._conv(144, 144, 56, 3, 1, 144)
    assert dw[0] == "conv2d depthwise" and dw[5] == 2 * 144 * 56 * 56 * 9


def test_suites_cover_the_issue_shapes():
    ops = {op[0] for _, op in bo.suite_ops("all")}
    assert {"conv2d 7x7", "conv2d 3x3", "conv2d 1x1", "conv2d depthwise", "matmul", "attention", "layernorm",
            "softmax", "lstm step"} <= ops
    assert {op[1] for op in bo.BERT if op[0] == "attention"} == {"12 heads, T=128, d=64", "12 heads, T=512, d=64"}
    with pytest.raises(DlcError, match="unknown op suite"):
        bo.suite_ops("vgg")


def test_a_small_suite_is_checked_and_timed_on_torch_and_tvm(monkeypatch):
    import torch
    n = torch.get_num_threads()
    for v in ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(v, "")
    monkeypatch.setitem(bo._BY_SUITE, "resnet", [bo._conv(8, 8, 8, 3), bo._dense(4, 16, 8)])
    monkeypatch.setattr(bo, "PEAK_N", 128)
    rep = bo.bench_ops(suite="resnet", runtimes=("torch", "tvm"), threads=1, repeat=3, warmup=1)
    torch.set_num_threads(n)
    assert rep["kind"] == "ops" and rep["ok"] and rep["peak"]["n"] == 128 and rep["peak"]["gflop_per_s"] > 0
    assert rep["peak"]["gflop_per_s"] == max(rep["peak_start"]["gflop_per_s"], rep["peak_end"]["gflop_per_s"])
    assert rep["peak"]["gflop_per_s"] >= rep["peak"]["median_gflop_per_s"]
    assert [(r["op"], r["runtime"]) for r in rep["rows"]] == [("conv2d 3x3", "torch"), ("conv2d 3x3", "tvm"),
                                                              ("matmul", "torch"), ("matmul", "tvm")]
    for r in rep["rows"]:
        assert r["check"]["ok"] and r["median_ms"] > 0
        assert r["gflop_per_s"] == pytest.approx(r["gflops"] / (r["median_ms"] / 1e3))
        assert r["peak_share"] == pytest.approx(r["gflop_per_s"] / rep["peak"]["gflop_per_s"])
    assert np.isclose(rep["rows"][2]["gflops"], 2 * 4 * 16 * 8 / 1e9)
