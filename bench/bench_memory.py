"""The memory plan against the NumPy interpreter's measured peak.

    python bench/bench_memory.py [--out bench/results/memory_plan.json]

For each model: the naive total (every intermediate kept, as the interpreter
did before it freed values), the planned peak (the sum of the reused
buffers), and the interpreter's peak as tracemalloc measures it over one run
started after the inputs and weights exist (so activations and kernel
scratch only), against the plan's prediction of that peak (live bytes plus
the kernels' scratch, `backends/numpy/workspace.py`).  Graphs at -O2.
"""
from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = [("resnet50", 1, "eval"), ("resnet18", 1, "eval"), ("mobilenet_v2", 1, "eval"), ("googlenet", 1, "eval"),
         ("vgg16", 1, "eval"), ("alexnet", 8, "eval"), ("lenet5", 64, "eval"), ("lenet5", 16, "train"),
         ("resnet18", 16, "train"), ("transformer_encoder_layer", 8, "eval"), ("gpt2_small", 1, "eval"), ("bert_base", 1, "eval")]


def measure(spec: str, n: int, mode: str) -> dict:
    import dlc
    from dlc.backends.numpy.interpreter import Interpreter
    from dlc.backends.numpy.workspace import workspace_bytes
    from dlc.compiler.memory_plan import plan_memory
    m = dlc.load(ROOT / f"specs/{spec}.dln", bind={"N": n})
    g = m.compiled_graph(mode, {"N": n})
    dims = {**{k: v for k, v in g.dims.items() if v}, "N": n}
    x, w = m.random_inputs(seed=0, bind={"N": n}), m.init_weights(seed=0)
    interp = Interpreter(g, dims=dims)
    interp.run(x, w)
    tracemalloc.start()
    interp.run(x, w)
    measured = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    plan = plan_memory(g, dims, workspace_bytes)
    return {"spec": spec, "N": n, "mode": mode, "kernels": plan.kernels, "naive_bytes": plan.naive,
            "planned_bytes": plan.peak, "saving": round(plan.saving, 4), "live_peak_bytes": plan.live_peak,
            "predicted_interpreter_bytes": plan.workspace_peak, "measured_interpreter_bytes": measured,
            "measured_over_predicted": round(measured / plan.workspace_peak, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench/results/memory_plan.json"))
    args = ap.parse_args()
    rows = [measure(*c) for c in CASES]
    mib = 1 << 20
    print(f"{'model':<28}{'N':>4} {'mode':<6}{'naive MiB':>10}{'planned':>9}{'saving':>8}"
          f"{'predicted':>11}{'measured':>10}{'ratio':>7}")
    for r in rows:
        print(f"{r['spec']:<28}{r['N']:>4} {r['mode']:<6}{r['naive_bytes'] / mib:>10.1f}{r['planned_bytes'] / mib:>9.1f}"
              f"{r['saving']:>8.0%}{r['predicted_interpreter_bytes'] / mib:>11.1f}"
              f"{r['measured_interpreter_bytes'] / mib:>10.1f}{r['measured_over_predicted']:>7.2f}")
    from dlc.runtime.atomic import atomic_write
    atomic_write(args.out, (json.dumps({"rows": rows}, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
