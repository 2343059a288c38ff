"""One training step of ResNet-18 (64x64 inputs, batch 32, SGD with momentum)
with the backbone frozen against the whole network training, on torch
(autograd and dlc's symbolic step) and TVM, measured in one process.

    python bench/bench_freeze.py [--backends torch,tvm] [--repeat 7] [--warmup 2]

Frozen: every parameter but `fc.*` (`freeze = ["conv1.*", "bn1.*", "layer*"]`)
with `freeze_bn = true`, the fine-tuning recipe: the backward stops at the
head, so the step is the forward pass plus the head's update.  Median of
`repeat` steps after `warmup`; the ratio is unfrozen / frozen.  Results go to
bench/results/freeze.md (with the CPU model and the load average, since
the machine may be shared).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPEC = ROOT / "specs" / "resnet18.dln"
BACKBONE = ["conv1.*", "bn1.*", "layer*"]


def make_step(backend: str, grad: str, frozen: bool, batch: int, size: int):
    from dlc.api import Model
    from dlc.backends import get_backend
    from dlc.backends.protocol import StepPlan
    from dlc.compiler.init import init_params
    from dlc.compiler.param_select import resolve
    from dlc.frontend.blocks import elaborate_model
    from dlc.frontend.modules import load_module
    from dlc.frontend.train import train_settings
    bind = {"size": size, "N": batch}
    mod = load_module(SPEC)
    tdef = mod.trains[0]
    s = train_settings(mod, tdef, bind)
    g = elaborate_model(mod, tdef.model, "train", bind)
    s.freeze, s.freeze_bn = (list(BACKBONE), True) if frozen else ([], False)
    resolve(s, [p.name for p in g.trainable_params()])
    module_graph = Model(str(SPEC), tdef.model, bind).module_graph() if grad == "autograd" else None
    plan = StepPlan(spec=s, model_graph=lambda: elaborate_model(mod, tdef.model, "train", bind),
                    weights=init_params(g, 0), optimizer_state=None, module_graph=module_graph, seed=0, grad=grad,
                    bind=bind, backend=backend)
    t0 = time.perf_counter()
    step = get_backend(backend).train_step(plan)
    return step, time.perf_counter() - t0


def time_step(step, batch: int, size: int, repeat: int, warmup: int) -> list[float]:
    rng = np.random.default_rng(0)
    feed = {"image": rng.standard_normal((batch, 3, size, size)).astype(np.float32),
            "label": rng.integers(0, 1000, batch).astype(np.int64)}
    times = []
    for i in range(warmup + repeat):
        t0 = time.perf_counter()
        step.run(feed, 0.01, i + 1, i)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="torch,tvm")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "freeze.md"))
    a = ap.parse_args()
    runs = []
    for b in a.backends.split(","):
        grads = ["autograd", "symbolic"] if b == "torch" else ["symbolic"]
        for grad in grads:
            med = {}
            for frozen in (False, True):
                step, build_s = make_step(b, grad, frozen, a.batch, a.size)
                t = time_step(step, a.batch, a.size, a.repeat, a.warmup)
                med[frozen] = statistics.median(t)
                runs.append((b, grad, "frozen backbone" if frozen else "all trainable", med[frozen], min(t), build_s))
                print(f"{b}/{grad} {'frozen' if frozen else 'full  '}: median {med[frozen] * 1e3:.1f} ms "
                      f"(min {min(t) * 1e3:.1f}, build {build_s:.1f} s)", flush=True)
            runs.append((b, grad, "speed-up", med[False] / med[True], None, None))
    write_report(a, runs)


def write_report(a, runs) -> None:
    from dlc.runtime.atomic import atomic_write
    load = os.getloadavg()
    lines = ["# One training step, ResNet-18 backbone frozen vs all trainable", "",
             f"`python bench/bench_freeze.py --backends {a.backends} --repeat {a.repeat} --warmup {a.warmup}`", "",
             f"ResNet-18 (specs/resnet18.dln, 1000 classes) at {a.size}x{a.size}, batch {a.batch}, "
             f"SGD(momentum 0.9, weight decay 1e-4); frozen = `freeze = {BACKBONE}`, `freeze_bn = true` "
             f"(only fc.* trains).  Median of {a.repeat} steps after {a.warmup} warm-up steps, one process.", "",
             f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; load average at the end "
             f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min).", "",
             "| backend | gradients | step | median ms | min ms | build s |", "|---|---|---|---:|---:|---:|"]
    for b, grad, what, med, mn, build in runs:
        if what == "speed-up":
            lines.append(f"| {b} | {grad} | **unfrozen / frozen** | **{med:.2f}x** | | |")
        else:
            lines.append(f"| {b} | {grad} | {what} | {med * 1e3:.1f} | {mn * 1e3:.1f} | {build:.1f} |")
    atomic_write(a.out, ("\n".join(lines) + "\n").encode())
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
