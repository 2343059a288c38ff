"""What batch-norm folding does to the NumPy interpreter's forward time.

    python bench/bench_bnfold.py [--spec specs/resnet18.dln] [--batch 1] [--repeat 21]
                                 [--out bench/results/bnfold_numpy.json]

Runs the model at -O0 and with `fold_batchnorm,fold_affine,dce`, interleaved
in one process (so a change of machine load hits both alike), after two
warm-up runs each, and reports medians of: the whole forward pass, the time
of the batch_norm nodes (-O0), and the time of the nodes that depend on
weights alone (folded: W' and b', which the interpreter recomputes every
run; TVM computes them once in main_transform_params).  "folded, weights
once" is the folded time less that recomputation.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSES = ["fold_batchnorm", "fold_affine", "dce"]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(spec: str, batch: int, repeat: int) -> dict:
    import os

    import dlc
    from dlc.backends.numpy.interpreter import Interpreter
    from dlc.compiler.passes._folding import WeightOnly

    m = dlc.load(spec, bind={"N": batch})
    weights, inputs = m.init_weights(0), m.random_inputs(0)
    plain = m.optimize(level=0).compiled_graph("eval")
    folded = m.optimize(passes=PASSES).compiled_graph("eval")
    weight_only = WeightOnly()

    class Timed(Interpreter):
        """Adds up the time of the batch_norm and weight-only nodes of a run."""
        def run_node(self, node, env):
            t0 = time.perf_counter()
            out = super().run_node(node, env)
            if node.op.name == "batch_norm" or all(weight_only(o) for o in node.outputs):
                self.part += time.perf_counter() - t0
            return out

    runs = {"O0": Timed(plain, dims={"N": batch}), "folded": Timed(folded, dims={"N": batch})}
    times = {k: [] for k in ("O0", "O0_batch_norm", "folded", "folded_weights")}
    for i in range(repeat + 2):
        for key, interp in runs.items():
            interp.part = 0.0
            t0 = time.perf_counter()
            interp.run(inputs, weights)
            if i >= 2:
                times[key].append(time.perf_counter() - t0)
                times["O0_batch_norm" if key == "O0" else "folded_weights"].append(interp.part)
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {
        "spec": spec, "batch": batch, "repeat": repeat, "cpu": _cpu(),
        "load_average": os.getloadavg(),
        "nodes": {"O0": len(plain.nodes), "folded": len(folded.nodes),
                  "batch_norm_O0": sum(n.op.name == "batch_norm" for n in plain.nodes)},
        "median_ms": ms,
        "folded_over_O0": ms["folded"] / ms["O0"],
        "folded_weights_once_over_O0": (ms["folded"] - ms["folded_weights"]) / ms["O0"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="specs/resnet18.dln")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--out")
    args = ap.parse_args()
    r = measure(args.spec, args.batch, args.repeat)
    ms = r["median_ms"]
    print(f"{r['spec']} b{r['batch']} NumPy, {r['repeat']} interleaved runs, medians, {r['cpu']}, "
          f"load {r['load_average'][0]:.1f}")
    print(f"  -O0     {ms['O0']:9.1f} ms  (batch_norm nodes {ms['O0_batch_norm']:.1f} ms)")
    print(f"  folded  {ms['folded']:9.1f} ms  (W', b' recomputed: {ms['folded_weights']:.1f} ms)")
    print(f"  folded / -O0 = {r['folded_over_O0']:.3f};  weights once: {r['folded_weights_once_over_O0']:.3f}")
    if args.out:
        from dlc.runtime.atomic import atomic_write
        atomic_write(args.out, (json.dumps(r, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
