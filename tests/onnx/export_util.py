"""Shared by the ONNX export tests: export a zoo spec once, run it on onnxruntime."""
from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest

ort = pytest.importorskip("onnxruntime")

import dlc
from dlc.backends.onnx import export_graph
from dlc.bench_baselines import lively_weights
from dlc.onnx_export_cli import forward_graph


@functools.cache
def exported(spec: str):
    """(model, weights, ModelProto) of `spec`'s eval graph, symbolic dims kept;
    random biases, norm scales and statistics, so that a wrong one shows."""
    m = dlc.load(spec)
    w = lively_weights(m.init_weights(0))
    return m, w, export_graph(forward_graph(m), w, source=spec)


@functools.cache
def exported_with_layers(spec: str):
    """(model, weights, graph, ModelProto) where every layer's output is a graph
    output too ("layer:<name>"), so a comparison sees each layer, not only the last.
    Without the fusion pass: a fused region would hide the layers' outputs in its body."""
    m, w, _ = exported(spec)
    g = forward_graph(m.optimize(level=m.opt.level, disable=("fusion",)))
    top = {o.id for n in g.nodes for o in n.outputs}
    seen = {v.id for v in g.outputs}
    for layer in g.layers:
        for i, v in enumerate(layer.outputs):
            if v.id in top and v.id not in seen and v.type.dtype.is_float:
                seen.add(v.id)
                g.outputs.append(v)
                g.output_names.append(f"layer:{layer.name}:{i}")
    return m, w, g, export_graph(g, w, source=spec)


def session(proto: onnx.ModelProto):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_onnx(proto, feed: dict) -> dict:
    s = session(proto)
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, feed)))


def rel_err(got, ref) -> float:
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-30)
    return float(np.max(np.abs(got - ref))) / scale if ref.size else 0.0
