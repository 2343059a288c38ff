"""dlc's layout pass against TVM's ConvertLayout, on the TVM CPU backend.

    python bench/bench_layout.py [--models resnet18,mobilenet_v2] [--batches 1] [--repeat 30]

For each model and batch, in one process and on the same weights: the spec
at -O2 with the `layout` pass (dlc emits NHWC conv2d, the TVM pipeline skips
ConvertLayout) and at -O2 with ``--disable-pass layout`` (NCHW IR, TVM's
ConvertLayout, i.e. the path before the pass existed), plus a second runner
of the ConvertLayout executable as an A/A control of the noise.  Outputs are checked
against the NumPy reference first; each timing is the median of `repeat`
calls after warm-up, the runners alternating in four rounds (the order
rotated every round).
TVM_NUM_THREADS is set to the core count before TVM is imported.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet18,mobilenet_v2")
    ap.add_argument("--batches", default="1")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))
    import numpy as np

    import dlc
    from dlc.backends.tvm.compile import compile_graph
    for name in args.models.split(","):
        for n in (int(b) for b in args.batches.split(",")):
            bind = {"N": n}
            m = dlc.load(ROOT / "specs" / f"{name}.dln")
            weights, inputs = m.init_weights(0), m.random_inputs(0, bind)
            want = next(iter(m.run(inputs, weights, bind=bind).values()))
            runners = {}
            for label, disable in (("dlc layout", ()), ("ConvertLayout", ("layout",))):
                mm = m.optimize(level=2, disable=disable)
                t0 = time.perf_counter()
                c = compile_graph(mm.compiled_graph(bind=bind, backend="tvm"), "cpu", bind=bind)
                r = c.runner().set_weights(weights)
                got = next(iter(r.run(inputs).values()))
                err = float(np.abs(got - want).max() / np.abs(want).max())
                print(f"{name} b{n} {label}: compiled in {time.perf_counter() - t0:.1f} s, rel err {err:.2g}",
                      flush=True)
                runners[label] = r
                if label == "ConvertLayout":
                    # an A/A control: the same executable in a second runner measures the noise
                    runners["ConvertLayout (again)"] = c.runner().set_weights(weights)
            times = {k: [] for k in runners}
            for rnd in range(4):
                # the order rotates between rounds: no variant always runs first
                for label, r in (list(runners.items())[rnd % 3:] + list(runners.items())[:rnd % 3]):
                    for _ in range(3):
                        r.run(inputs)
                    for _ in range(args.repeat // 4):
                        t = time.perf_counter()
                        r.run(inputs)
                        times[label].append(time.perf_counter() - t)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            print(f"{name} b{n}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in med.items())
                  + f"; layout/ConvertLayout = {med['dlc layout'] / med['ConvertLayout']:.3f}"
                  + f" (A/A control: {med['ConvertLayout (again)'] / med['ConvertLayout']:.3f})", flush=True)


if __name__ == "__main__":
    main()
