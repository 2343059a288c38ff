"""ONNX Attention imported and run on NumPy and torch against onnx's reference evaluator, over
the variants the converter writes out (the QK output modes, softcap, the KV caches, windows,
grouped heads, short and fully masked masks, fp16), plus the plain case's single
scaled_dot_product_attention node and located errors for malformed nodes."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from dlc.errors import DlcError
from dlc.frontend.onnx import import_onnx
from dlc.onnx_import import run_imported

_T = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16, np.bool_: TensorProto.BOOL,
      np.int64: TensorProto.INT64}


def _model(inputs: dict, outputs: list[str], opset: int, **attrs):
    order = ["Q", "K", "V", "attn_mask", "past_key", "past_value", "nonpad_kv_seqlen"]
    names = [n if n in inputs else "" for n in order]
    while names and not names[-1]:
        names.pop()
    node = helper.make_node("Attention", names, outputs, name="attn", **attrs)
    vis = [helper.make_tensor_value_info(n, _T[a.dtype.type], a.shape) for n, a in inputs.items()]
    outs = [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in outputs if n]
    g = helper.make_graph([node], "g", vis, outs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _check(inputs: dict, outputs=("Y",), opset=24, backends=("numpy", "torch"), rtol=1e-5, atol=1e-6, **attrs):
    m = _model(inputs, list(outputs), opset, **attrs)
    want = ReferenceEvaluator(m).run(None, inputs)
    imp = import_onnx(m)
    for backend in backends:
        if backend == "torch":
            pytest.importorskip("torch")
        got = run_imported(imp, inputs, backend)
        names = [n for n in outputs if n]
        for name, w in zip(names, want):
            g = got[name]
            assert g.shape == w.shape and g.dtype == w.dtype, (backend, name, g.shape, w.shape)
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol,
                                       err_msg=f"{backend}: {name}")
    return imp


def _r(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape).astype(dtype)


def _ops(imp) -> list[str]:
    return [n.op.name for n in imp.graph.nodes]


def test_plain_case_is_one_sdpa_node():
    q, k, v = _r(2, 3, 4, 8), _r(2, 3, 6, 8, seed=1), _r(2, 3, 6, 8, seed=2)
    mask = np.random.default_rng(3).random((4, 6)) > 0.3
    imp = _check({"Q": q, "K": k, "V": v, "attn_mask": mask})
    assert _ops(imp).count("scaled_dot_product_attention") == 1 and "softmax" not in _ops(imp)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
@pytest.mark.parametrize("softcap", [0.0, 2.0])
def test_qk_matmul_output_modes_with_cache_and_bias(mode, softcap):
    q, k, v = _r(2, 4, 3, 8), _r(2, 2, 5, 8, seed=1), _r(2, 2, 5, 8, seed=2)
    pk, pv = _r(2, 2, 4, 8, seed=3), _r(2, 2, 4, 8, seed=4)
    bias = _r(2, 1, 3, 9, seed=5)            # grouped heads (4 over 2), a cache of 4, a float mask
    imp = _check({"Q": q, "K": k, "V": v, "attn_mask": bias, "past_key": pk, "past_value": pv},
                 ("Y", "present_key", "present_value", "qk"), is_causal=1, qk_matmul_output_mode=mode,
                 softcap=softcap)
    assert "scaled_dot_product_attention" not in _ops(imp)


def test_3d_inputs_short_bool_mask_and_scale():
    q, k, v = _r(2, 4, 12), _r(2, 7, 12, seed=1), _r(2, 7, 6, seed=2)
    mask = np.random.default_rng(4).random((2, 3, 4, 5)) > 0.4    # 5 of the 7 keys: the rest masked
    _check({"Q": q, "K": k, "V": v, "attn_mask": mask}, q_num_heads=3, kv_num_heads=3, scale=0.3)


def test_fully_masked_rows_give_zeros():
    q, k, v = _r(1, 2, 3, 4), _r(1, 2, 5, 4, seed=1), _r(1, 2, 5, 4, seed=2)
    mask = np.ones((3, 5), dtype=bool)
    mask[1] = False
    imp = _check({"Q": q, "K": k, "V": v, "attn_mask": mask}, ("Y", "", "", "qk"), qk_matmul_output_mode=3)
    y = run_imported(imp, {"Q": q, "K": k, "V": v, "attn_mask": mask}, "numpy")["Y"]
    assert np.all(y[:, :, 1] == 0) and np.all(np.isfinite(y))


@pytest.mark.parametrize("causal", [0, 1])
def test_nonpad_kv_seqlen_external_cache(causal):
    q, k, v = _r(3, 2, 2, 4), _r(3, 2, 6, 4, seed=1), _r(3, 2, 6, 4, seed=2)
    # batch 2's frontier (1 - 2 = -1) masks its first query row entirely
    nonpad = np.array([6, 3, 1], dtype=np.int64)
    _check({"Q": q, "K": k, "V": v, "nonpad_kv_seqlen": nonpad}, is_causal=causal)


@pytest.mark.parametrize("left,right", [(1, 0), (2, -1), (-1, 1), (0, 0)])
def test_sliding_window_with_past(left, right):
    q, k, v = _r(1, 2, 3, 4), _r(1, 2, 3, 4, seed=1), _r(1, 2, 3, 4, seed=2)
    pk, pv = _r(1, 2, 2, 4, seed=3), _r(1, 2, 2, 4, seed=4)
    _check({"Q": q, "K": k, "V": v, "past_key": pk, "past_value": pv}, ("Y", "pk", "pv"), opset=25,
           left_window_size=left, right_window_size=right)


def test_sliding_window_external_cache_and_mask():
    q, k, v = _r(2, 2, 2, 4), _r(2, 2, 6, 4, seed=1), _r(2, 2, 6, 4, seed=2)
    mask = _r(2, 6, seed=5)
    _check({"Q": q, "K": k, "V": v, "attn_mask": mask, "nonpad_kv_seqlen": np.array([5, 4], dtype=np.int64)},
           opset=25, is_causal=1, left_window_size=2)


def test_fp16_is_written_out_in_fp16():
    q, k, v = (_r(2, 3, 4, 8, dtype=np.float16, seed=s) for s in range(3))
    imp = _check({"Q": q, "K": k, "V": v}, ("Y", "", "", "qk"), is_causal=1, qk_matmul_output_mode=3,
                 rtol=1e-3, atol=1e-3)
    assert "scaled_dot_product_attention" not in _ops(imp)


def test_softmax_precision_float_for_fp16():
    q, k, v = (_r(1, 2, 3, 8, dtype=np.float16, seed=s) for s in range(3))
    imp = _check({"Q": q, "K": k, "V": v}, ("Y", "", "", "qk"), softmax_precision=TensorProto.FLOAT,
                 qk_matmul_output_mode=3, rtol=1e-3, atol=1e-3)
    assert "cast" in _ops(imp)


@pytest.mark.parametrize("inputs,attrs,match", [
    ({"past_key": _r(1, 2, 2, 4)}, {}, "past_key and past_value together"),
    ({}, {"qk_matmul_output_mode": 5}, "qk_matmul_output_mode=5"),
    ({"attn_mask": np.ones((3, 9), dtype=bool)}, {}, "9 key positions for 3 keys"),
])
def test_malformed_attention_gets_a_located_error(inputs, attrs, match):
    base = {"Q": _r(1, 2, 3, 4), "K": _r(1, 2, 3, 4), "V": _r(1, 2, 3, 4)}
    m = _model({**base, **inputs}, ["Y"], 24, **attrs)
    with pytest.raises(DlcError, match=match) as e:
        import_onnx(m)
    assert "node 0 'attn' (Attention)" in e.value.message


def test_kv_heads_must_divide_query_heads():
    m = _model({"Q": _r(1, 3, 2, 4), "K": _r(1, 2, 2, 4), "V": _r(1, 2, 2, 4)}, ["Y"], 24)
    with pytest.raises(DlcError, match="3 query heads and 2 key/value heads"):
        import_onnx(m)
