"""Export every zoo spec to ONNX and print, per spec, the largest relative error of
onnxruntime against the NumPy reference (the table of docs/onnx.md).  Run from the
repository root: python bench/onnx_export_errors.py"""
from __future__ import annotations

import glob

import numpy as np
import onnxruntime as ort

import dlc
from dlc.backends.onnx import export_graph
from dlc.bench_baselines import lively_weights
from dlc.onnx_export_cli import forward_graph

SIZES = {"N": 2, "T": 5, "S": 4}
for p in sorted(glob.glob("specs/*.dln")):
    m = dlc.load(p); w = lively_weights(m.init_weights(0))
    proto = export_graph(forward_graph(m), w, noise_inputs=False)
    syms = {s for v in m.symbolic_graph().inputs for s in v.type.symbols()}
    b = {k: v for k, v in SIZES.items() if k in syms}
    feed = m.random_inputs(0, b); ref = m.run(feed, w, bind=b)
    so = ort.SessionOptions(); so.log_severity_level = 3
    s = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in s.get_outputs()], s.run(None, feed)))
    errs = []
    for k, r in ref.items():
        if p.endswith("vae.dln") and k == "recon":
            continue
        errs.append(float(np.max(np.abs(got[k] - r)) / np.max(np.abs(r))))
    print(f"| {p.split('/')[-1][:-4]} | {', '.join(f'{k}={v}' for k, v in b.items())} | {len(proto.graph.node)} | {max(errs):.1e} |", flush=True)
