"""One training step (forward, cross-entropy, backward, Adam update) of the
NumPy backend running dlc's training-step IR, against a hand-written PyTorch
eager step, measured in the same run.

    python bench/bench_train.py [--repeat 9]

Median of `repeat` steps after two warm-up steps; batch 64.  Results go to
bench/results/train_step.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_numpy import median_time  # noqa: E402


def bench(spec: str, torch_module, batch: int, repeat: int, opt_level: int = 2) -> dict:
    import torch
    from dlc.backends.numpy.interpreter import Interpreter
    from dlc.compiler.init import init_params
    from dlc.compiler.training import build_train_step, state_fill
    from dlc.frontend.blocks import elaborate_model
    from dlc.frontend.modules import load_module
    from dlc.frontend.train import train_settings
    mod = load_module(ROOT / spec)
    s = train_settings(mod, mod.trains[0])
    s.optimizer, s.optimizer_args = "adam", {"lr": 1e-3}
    prog = build_train_step(elaborate_model(mod, mod.trains[0].model, "train"), s)
    from dlc.compiler.passes import PipelineOptions, run_pipeline
    run_pipeline(prog.graph, PipelineOptions(level=opt_level), backend="numpy", dims={"N": batch})
    g = prog.graph
    w = init_params(g, 0)
    state = {k: np.full(tuple(int(d) for d in t.shape), f, t.dtype.numpy_name)
             for k, (t, f) in state_fill(s, prog.params).items()}
    x_in = g.inputs[0]
    shape = (batch,) + tuple(int(d) for d in x_in.type.shape[1:])
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, batch)
    feed = {x_in.name: x, "label": y, **state, "lr": np.float32(1e-3), "step": np.float32(1)}
    interp = Interpreter(g, dims={"N": batch})

    def ours():
        interp.run(feed, w)

    torch_module.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()})
    opt = torch.optim.Adam(torch_module.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def theirs():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(torch_module(xt), yt).backward()
        opt.step()

    import time
    t_torch = median_time(theirs, repeat)   # first: see bench_numpy.py on OpenBLAS spinning
    time.sleep(0.5)
    t_np = median_time(ours, repeat)
    time.sleep(0.5)
    return {"spec": spec, "batch": batch, "numpy_ms": t_np * 1e3, "torch_ms": t_torch * 1e3, "ratio": t_np / t_torch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--out", default=str(ROOT / "bench/results/train_step.json"))
    ap.add_argument("--opt", type=int, default=2, help="-O level of the dlc training-step graph")
    args = ap.parse_args()
    import torch
    from bench.reference.torch_models import MLP, LeNet5
    rows = [bench("specs/mlp.dln", MLP(), 64, args.repeat, args.opt),
            bench("specs/lenet5.dln", LeNet5(), 64, args.repeat, args.opt)]
    print(f"{'model':<20}{'batch':>6}{'numpy ms':>11}{'torch ms':>11}{'ratio':>8}")
    for r in rows:
        print(f"{r['spec']:<20}{r['batch']:>6}{r['numpy_ms']:>11.2f}{r['torch_ms']:>11.2f}{r['ratio']:>8.2f}")
    from dlc.runtime.atomic import atomic_write
    atomic_write(args.out, (json.dumps({"torch": torch.__version__, "train_step": rows}, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
