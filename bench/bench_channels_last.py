"""torch backend: the generated module in NCHW (contiguous) vs channels_last.

    python bench/bench_channels_last.py [--models resnet18,mobilenet_v2] [--batches 1,32] [--repeat 20] [--threads N]

For each model and batch, in one process and on the same weights: dlc's
generated nn.Module in eval mode under torch.no_grad(), once as generated
(contiguous NCHW parameters and input) and once with the module and the
input in ``torch.channels_last``.  Outputs are compared first; each timing
is the median of `repeat` calls after warm-up, the two variants alternating
in four rounds, the order reversed every other round (so drift of a shared
machine hits both alike).
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
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)

    import dlc
    from dlc.backends.torch import TorchBackend
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    for name in args.models.split(","):
        m = dlc.load(ROOT / "specs" / f"{name}.dln")
        weights = m.init_weights(0)
        base = TorchBackend.module(m.module_graph(), weights).eval()
        cl = TorchBackend.module(m.module_graph(), weights).eval().to(memory_format=torch.channels_last)
        for n in (int(b) for b in args.batches.split(",")):
            x = torch.from_numpy(m.random_inputs(0, {"N": n})[m.graph.inputs[0].name])
            xcl = x.contiguous(memory_format=torch.channels_last)
            fns = {"NCHW": lambda: base(x), "channels_last": lambda: cl(xcl)}
            with torch.no_grad():
                a, b = fns["NCHW"](), fns["channels_last"]()
                err = float((a - b).abs().max() / a.abs().max())
                times = {k: [] for k in fns}
                reps = max(3, args.repeat // (4 if n == 1 else 8))
                for rnd in range(4):
                    # the order alternates between rounds: neither variant always runs first
                    for k, f in (list(fns.items()) if rnd % 2 == 0 else list(fns.items())[::-1]):
                        for _ in range(2):
                            f()
                        for _ in range(reps):
                            t = time.perf_counter()
                            f()
                            times[k].append(time.perf_counter() - t)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            print(f"{name} b{n}: NCHW {med['NCHW']:.2f} ms, channels_last {med['channels_last']:.2f} ms, "
                  f"channels_last/NCHW = {med['channels_last'] / med['NCHW']:.3f} (outputs agree to {err:.1g})",
                  flush=True)


if __name__ == "__main__":
    main()
