"""TVM: a fused softmax / layer-norm region (written out, as the fusion pass
outlines it) built three ways -- the body inlined (TVM's FuseOps alone), the
region lowering of backends/tvm/lowering_fused.py, and dlc's own op -- with
the kernels of each (``relax.call_tir``s of ``main`` after pipeline.prepare)
and the median time of a call.

    python bench/bench_tvm_fused.py [--calls 50] [--out bench/results/tvm_fused.json]

Sizes: softmax over [1, 12, 128, 128] (BERT-base's attention weights at
T=128), layer norm over [1, 128, 768].  The outputs are checked against the
NumPy interpreter running the body.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPEC = """
model S(x: f32[N, 12, T, T], h: f32[N, T, 768]) -> (f32[N, 12, T, T], f32[N, T, 768]) {
    example N = 1, T = 128
    param gamma: f32[768] = ones
    param beta: f32[768] = zeros
    e = exp(x - max(x, axis=-1, keepdims=true))
    sm = e / sum(e, axis=-1, keepdims=true)
    d = h - mean(h, axis=-1, keepdims=true)
    ln = d / sqrt(mean(d * d, axis=-1, keepdims=true) + 1e-12) * gamma + beta
    return sm, ln
}
"""
OPS = """
model O(x: f32[N, 12, T, T], h: f32[N, T, 768]) -> (f32[N, 12, T, T], f32[N, T, 768]) {
    example N = 1, T = 128
    return softmax(x, axis=-1), layernorm(h, eps=1e-12, name="ln")
}
"""


def graph(text: str, index: int, kind: str | None):
    import dlc
    from dlc.compiler.passes.dce import dce_graph
    from dlc.compiler.passes.regions import outline
    g = dlc.Model("s.dln", text=text).optimize(level=0)._elaborate("eval", None)
    g.outputs, g.output_names = [g.outputs[index]], [g.output_names[index]]
    dce_graph(g)
    if kind:
        outline(g, list(g.nodes), kind)
    return g


def measure(g, calls: int, inline: bool) -> dict:
    import tvm
    from tvm import relax

    from dlc.backends.numpy.interpreter import Interpreter
    from dlc.backends.tvm.lowering import LOWERING
    from dlc.backends.tvm.pipeline import build, prepare
    from dlc.backends.tvm.relaxgen import to_relax
    saved = LOWERING.pop("fused") if inline else None      # inlined: the decomposition path
    try:
        low = to_relax(g, lift_params=False)
    finally:
        if saved is not None:
            LOWERING["fused"] = saved
    names = []
    relax.analysis.post_order_visit(prepare(low.mod, "llvm")["main"].body, lambda e: names.append(
        e.args[0].name_hint) if isinstance(e, relax.Call) and getattr(e.op, "name", "") == "relax.call_tir" else None)
    f = relax.VirtualMachine(build(low.mod, "llvm"), tvm.cpu())["main"]
    rng = np.random.default_rng(0)
    feed = {v.name: rng.standard_normal([int(d) for d in v.type.shape]).astype("float32") for v in g.inputs}
    w = {p.name: rng.standard_normal([int(d) for d in p.type.shape]).astype("float32") for p in g.params}
    args = [tvm.runtime.tensor(feed[v.name]) for v in g.inputs] + [tvm.runtime.tensor(w[p.name]) for p in g.params]
    for _ in range(5):
        f(*args)
    ts = []
    for _ in range(calls):
        t0 = time.perf_counter()
        f(*args)
        ts.append(time.perf_counter() - t0)
    want = next(iter(Interpreter(g).run(feed, w)[0].values()))
    got = f(*args).numpy()
    return {"kernels": names, "median_us": statistics.median(ts) * 1e6,
            "rel_err": float(np.abs(got - want).max() / np.abs(want).max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "bench/results/tvm_fused.json"))
    args = ap.parse_args()
    from bench.bench_torch_zoo import cpu_model
    rows = []
    load = os.getloadavg()
    for index, kind in ((0, "softmax"), (1, "layernorm")):
        cells = {"inlined body": measure(graph(SPEC, index, kind), args.calls, True),
                 "fused lowering": measure(graph(SPEC, index, kind), args.calls, False),
                 "dlc's op": measure(graph(OPS, index, None), args.calls, False)}
        for how, r in cells.items():
            print(f"{kind:10s} {how:15s} {len(r['kernels']):2d} kernels {r['median_us']:9.1f} us  "
                  f"rel.err {r['rel_err']:.1e}  {r['kernels']}")
        rows.append({"region": kind, **cells})
    print(f"CPU {cpu_model()}, load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    from dlc.runtime.atomic import atomic_write
    atomic_write(args.out, (json.dumps({"cpu": cpu_model(), "loadavg_before": load,
                                        "loadavg_after": os.getloadavg(), "rows": rows}, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
