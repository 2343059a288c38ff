"""NumPy interpreter against PyTorch eager, by single-thread CPU time: a
measure that holds up on a shared, loaded machine, where wall-clock medians
do not (see bench_numpy.py and bench_train.py for the wall-clock runs).

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/bench_numpy_cputime.py

Both sides run single-threaded in one process (torch.set_num_threads(1);
OpenBLAS pinned by the environment above) and are timed with
time.process_time, medians after two warm-up runs.  The cases are the issue's:
ResNet-18 b1 forward at -O2, and one training step (forward, cross-entropy,
backward, Adam) of mlp and lenet5 at b64.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_median(fn, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--out", default=str(ROOT / "bench/results/numpy_cputime.json"))
    args = ap.parse_args()
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        sys.exit("set OPENBLAS_NUM_THREADS=1 (and OMP_NUM_THREADS=1): CPU time of a threaded BLAS counts its spinning")
    import torch
    torch.set_num_threads(1)
    import bench.bench_numpy as bn
    import bench.bench_train as bt
    bn.median_time = bt.median_time = cpu_median          # same cases, timed by CPU time
    from bench.bench_numpy import _cpu_model
    from bench.reference.torch_models import MLP, LeNet5, ResNet18
    rows = [bn.bench_forward("specs/resnet18.dln", ResNet18(), 1, args.repeat, "image"),
            bt.bench("specs/mlp.dln", MLP(), 64, 2 * args.repeat),
            bt.bench("specs/lenet5.dln", LeNet5(), 64, args.repeat)]
    print(f"{'case':<22}{'batch':>6}{'numpy ms':>10}{'torch ms':>10}{'ratio':>7}")
    for r, what in zip(rows, ("forward", "train step", "train step")):
        print(f"{r['spec'].split('/')[-1] + ' ' + what:<22}{r['batch']:>6}{r['numpy_ms']:>10.2f}"
              f"{r['torch_ms']:>10.2f}{r['ratio']:>7.2f}")
    load = os.getloadavg()
    from dlc.runtime.atomic import atomic_write
    atomic_write(args.out, (json.dumps({"cpu": _cpu_model(), "load_average": load, "clock": "process_time",
                                        "threads": 1, "torch": torch.__version__, "rows": rows}, indent=2)
                            + "\n").encode())


if __name__ == "__main__":
    main()
