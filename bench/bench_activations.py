"""Kernel against decomposition, per activation and backend, in one process.

    python bench/bench_activations.py [--backends numpy,torch,tvm] [--repeat 15]
        [--shape 16,64,32,32] [--ops silu,gelu] [--out bench/results/activations.json]

For every op with a decomposition, a one-node graph `y = op(x)` (float32) is
run through the backend twice: with the backend's own kernel, and with that
kernel taken out of its table, so the backend lowers the decomposition (the
way it does for an op it has no kernel for).  The two are timed alternately
(one run each, `repeat` rounds, after two warm-up rounds) and the medians are
reported with their ratio (decomposition / kernel; above 1 is slower).  An op
whose backend has no kernel is timed once, as "decomposition only".
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlc.compiler.builder import Builder  # noqa: E402
from dlc.compiler.ir import Graph  # noqa: E402
from dlc.compiler.ops import OPS  # noqa: E402
from dlc.compiler.types import DType, TensorType  # noqa: E402

VARIANTS = {"gelu": [{}, {"approximate": "tanh"}],
            "interpolate": [{"scale_factor": 2, "mode": m} for m in ("nearest", "bilinear", "bicubic")],
            "pixel_shuffle": [{"upscale_factor": 2}], "pixel_unshuffle": [{"downscale_factor": 2}]}


def one_node(op: str, attrs: dict, shape) -> Graph:
    g = Graph(f"bench_{op}")
    x = g.add_input("x", TensorType(DType.f32, tuple(shape)))
    g.outputs, g.output_names = [Builder(g).op(op, x, **attrs)], ["y"]
    return g


def table(backend: str) -> dict:
    if backend == "numpy":
        from dlc.backends.numpy.interpreter import KERNELS
        return KERNELS
    if backend == "torch":
        from dlc.backends.torch.lowering import LOWERING
        return LOWERING
    from dlc.backends.tvm.lowering import LOWERING
    return LOWERING


@contextmanager
def without(tab: dict, op: str):
    saved = tab.pop(op)
    try:
        yield
    finally:
        tab[op] = saved


def runner(backend: str, g: Graph, x: np.ndarray, decompose: str | None = None):
    """A zero-argument function running the compiled graph once; `decompose`
    names an op whose kernel is left out (at compile time, or for the NumPy
    interpreter, which looks kernels up as it runs, during each run)."""
    if backend == "numpy":
        from dlc.backends.numpy.interpreter import Interpreter
        it = Interpreter(g)
        if decompose is None:
            return lambda: it.run({"x": x}, {})

        def run_decomposed():
            with without(table("numpy"), decompose):
                return it.run({"x": x}, {})
        return run_decomposed
    if backend == "torch":
        import torch
        from dlc.backends.torch.funcgen import compile_function
        fn, t = compile_function(g), torch.from_numpy(x)
        return lambda: fn(t, {})
    from dlc.backends.tvm.compile import compile_graph
    r = compile_graph(g, "cpu").runner().set_weights({})
    return lambda: r.run({"x": x})


def alternate(fns: list, repeat: int) -> list[float]:
    times = [[] for _ in fns]
    for rnd in range(repeat + 2):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            if rnd >= 2:
                times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def bench(backend: str, ops: list[str], shape, repeat: int) -> list[dict]:
    tab = table(backend)
    x = np.random.default_rng(0).uniform(-6, 6, size=shape).astype(np.float32)
    rows = []
    for op in ops:
        for attrs in VARIANTS.get(op, [{}]):
            g = one_node(op, attrs, shape)
            fns = []
            if op in tab:
                fns.append(runner(backend, g, x))
                with without(tab, op):
                    fns.append(runner(backend, one_node(op, attrs, shape), x, decompose=op))
            else:
                fns.append(runner(backend, g, x))
            ts = alternate(fns, repeat)
            row = {"backend": backend, "op": op, "attrs": attrs}
            if len(ts) == 2:
                row.update(kernel_ms=ts[0] * 1e3, decomposition_ms=ts[1] * 1e3, ratio=ts[1] / ts[0])
            else:
                row.update(kernel_ms=None, decomposition_ms=ts[0] * 1e3, ratio=None)
            rows.append(row)
            k = "   --   " if row["kernel_ms"] is None else f"{row['kernel_ms']:8.3f}"
            r = "decomposition only" if row["ratio"] is None else f"x{row['ratio']:.2f}"
            print(f"{backend:6} {op + ''.join(f' {v}' for v in attrs.values()):18} kernel {k} ms  "
                  f"decomposition {row['decomposition_ms']:8.3f} ms  {r}", flush=True)
    return rows


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="numpy,torch,tvm")
    ap.add_argument("--ops", default=",".join(n for n, o in OPS.items() if o.decompose is not None))
    ap.add_argument("--shape", default="16,64,32,32")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--out")
    a = ap.parse_args()
    shape = tuple(int(s) for s in a.shape.split(","))
    rows = []
    for backend in a.backends.split(","):
        rows += bench(backend, a.ops.split(","), shape, a.repeat)
    if a.out:
        Path(a.out).write_text(json.dumps({"machine": cpu_model(),
                                           "shape": shape, "repeat": a.repeat, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
