"""NumPy interpreter: the -O2 graph in NCHW (what the numpy backend gets) vs
the same graph in the layout the TVM CPU backend gets (NHWC), b1.

    python bench/bench_layout_numpy.py [--models resnet18,mobilenet_v2]

One process, same weights and inputs, medians of 12 runs per graph, the
order alternating between rounds.  This is the measurement behind the numpy
backend keeping NCHW (docs/passes/layout.md).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet18,mobilenet_v2")
    args = ap.parse_args()
    import dlc
    from dlc.backends import get_backend
    from dlc.compiler.passes import PipelineOptions, run_pipeline
    run = get_backend("numpy").run
    for name in args.models.split(","):
        m = dlc.load(ROOT / "specs" / f"{name}.dln")
        bind = {"N": 1}
        w, x = m.init_weights(0), m.random_inputs(0, bind)
        graphs = {label: run_pipeline(m._elaborate("eval", bind), PipelineOptions(level=2), backend=be,
                                      dims=bind)[0]
                  for label, be in (("NCHW", "numpy"), ("NHWC", "tvm"))}
        times = {k: [] for k in graphs}
        for rnd in range(4):
            for k in (list(graphs) if rnd % 2 == 0 else list(graphs)[::-1]):
                run(graphs[k], x, w, seed=0, mode="eval", bind=bind)
                for _ in range(3):
                    t = time.perf_counter()
                    run(graphs[k], x, w, seed=0, mode="eval", bind=bind)
                    times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"{name} b1: NCHW {med['NCHW']:.1f} ms, NHWC {med['NHWC']:.1f} ms, "
              f"NHWC/NCHW = {med['NHWC'] / med['NCHW']:.3f}", flush=True)


if __name__ == "__main__":
    main()
