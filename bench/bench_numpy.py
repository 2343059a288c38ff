"""NumPy interpreter forward time against PyTorch eager, measured in the same
run, and the zoo's elaborate+check time.

    python bench/bench_numpy.py [--repeat 7] [--out bench/results/numpy_forward.json]

Each timing is the median of `repeat` runs after two warm-up runs.  The
PyTorch modules are the hand-written ones in bench/reference/, loaded with the
same weights; their outputs are checked against dlc's before timing.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


OPT_LEVEL = 2     # -O level of the dlc graphs (--opt)


def median_time(fn, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_forward(spec: str, torch_module, batch: int, repeat: int, input_name: str) -> dict:
    import torch
    import dlc
    from dlc.backends.numpy.interpreter import Interpreter
    from dlc.compiler.passes import PipelineOptions
    m = dlc.load(ROOT / spec, bind={"N": batch}, opt=PipelineOptions(level=OPT_LEVEL))
    w = m.init_weights(seed=0)
    g = m.compiled_graph("eval", {"N": batch})      # through the pass pipeline (m.opt, default -O2)
    x = m.random_inputs(seed=0, bind={"N": batch})[input_name]
    interp = Interpreter(g, dims={"N": batch})
    ours = interp.run({input_name: x}, w)[0]
    out = next(iter(ours.values()))
    torch_module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in w.items()}, strict=True)
    torch_module.eval()
    xt = torch.from_numpy(x)
    with torch.no_grad():
        ref = torch_module(xt).numpy()
    err = float(np.max(np.abs(out - ref)) / (np.max(np.abs(ref)) + 1e-12))
    # torch first, then a pause: OpenBLAS worker threads keep spinning for a
    # moment after NumPy calls and would otherwise steal the cores from torch
    with torch.no_grad():
        t_torch = median_time(lambda: torch_module(xt), repeat)
    time.sleep(0.5)
    t_np = median_time(lambda: interp.run({input_name: x}, w), repeat)
    time.sleep(0.5)
    return {"spec": spec, "batch": batch, "numpy_ms": t_np * 1e3, "torch_ms": t_torch * 1e3,
            "ratio": t_np / t_torch, "max_rel_err": err}


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_check(repeat: int) -> dict:
    from dlc.frontend.check import check_file
    from dlc.frontend.modules import clear_cache
    specs = sorted((ROOT / "specs").glob("*.dln"))

    def run_all():
        clear_cache()
        for s in specs:
            check_file(str(s))
    t = median_time(run_all, repeat, warmup=1)
    return {"specs": len(specs), "seconds": t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "bench/results/numpy_forward.json"))
    ap.add_argument("--opt", type=int, default=2, help="-O level of the dlc graph")
    ap.add_argument("--no-check", action="store_true", help="skip the zoo elaborate+check timing")
    args = ap.parse_args()
    global OPT_LEVEL
    OPT_LEVEL = args.opt
    import torch
    from bench.reference.torch_models import MLP, ResNet18
    rows = [
        bench_forward("specs/resnet18.dln", ResNet18(), 1, args.repeat, "image"),
        bench_forward("specs/mlp.dln", MLP(), 256, args.repeat, "x"),
    ]
    check = None if args.no_check else bench_check(max(3, args.repeat // 2))
    result = {"machine": _cpu_model(), "opt_level": args.opt, "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(), "forward": rows, "zoo_check": check}
    print(f"{'model':<22}{'batch':>6}{'numpy ms':>11}{'torch ms':>11}{'ratio':>8}{'max rel err':>13}")
    for r in rows:
        print(f"{r['spec']:<22}{r['batch']:>6}{r['numpy_ms']:>11.2f}{r['torch_ms']:>11.2f}{r['ratio']:>8.2f}"
              f"{r['max_rel_err']:>13.1e}")
    if check:
        print(f"zoo elaborate+check: {check['specs']} specs in {check['seconds']:.2f} s")
    from dlc.runtime.atomic import atomic_write
    atomic_write(args.out, (json.dumps(result, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
