"""Channel pruning on TVM cpu: the pruned model's forward time over the dense one's.

    python bench/bench_prune.py [--sparsity 0.3] [--batch 1 32] [--rounds 7] [--repeat 20]
                                [--out bench/results/prune.md]

For each model (digits_cnn, lenet5, resnet18 at 224x224) the dense spec and
its channel-pruned spec (`dlc prune --structured channel`, from the seeded
initial weights: the speed does not depend on the values) are compiled with
TVM for this CPU (-O2, untuned, the weights lifted as `dlc bench` does) and
timed in the same process, alternately: `rounds` rounds of `repeat` timed
calls each after warm-up, the ratio taken per round, and the median of the
per-round ratios reported (so that a change of machine load hits both).
Writes a markdown table with the CPU model and the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = [("digits_cnn", "specs/digits_cnn.dln", {}), ("lenet5", "specs/lenet5.dln", {}),
          ("resnet18", "specs/resnet18.dln", {})]


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def _runner(path: str, bind: dict, weights=None):
    import dlc
    from dlc.backends.tvm.cache import compile_cached
    m = dlc.load(path, bind=bind)
    g = m.optimized(m.symbolic_graph("eval"), "tvm", "cpu", bind)
    compiled, _ = compile_cached(g, "cpu", bind=bind)
    r = compiled.runner()
    r.set_weights(weights if weights is not None else m.init_weights(0))
    return m, r


def measure(name: str, spec: str, bind: dict, sparsity: float, batch: int, rounds: int, repeat: int,
            round_to: int = 1) -> dict:
    import dlc
    from dlc.prune_channels import check_pruned, prune_channels
    from dlc.prune_spec import write_spec
    bind = {**bind, "N": batch}
    m = dlc.load(spec, bind=bind)
    texts, pruned_w, _, report = prune_channels(m, m.init_weights(0), sparsity, round_to=round_to)
    tmp = Path(tempfile.mkdtemp(prefix="dlc-prune-bench-"))
    out = tmp / f"{name}_pruned.dln"
    write_spec(spec, texts, out)
    check_pruned(out, pruned_w, report, m.name)
    _, dense = _runner(spec, bind)
    small_m, small = _runner(str(out), bind, pruned_w)
    x = small_m.random_inputs(0, bind)
    dense_ms, pruned_ms, ratios = [], [], []
    for _ in range(rounds):
        d = statistics.median(dense.time(x, repeat=repeat, warmup=2))
        p = statistics.median(small.time(x, repeat=repeat, warmup=2))
        dense_ms.append(d * 1e3)
        pruned_ms.append(p * 1e3)
        ratios.append(p / d)
    return {"model": name, "batch": batch, "params": (report.params_before, report.params_after),
            "pruned_layers": len(report.layers), "dense_ms": statistics.median(dense_ms),
            "pruned_ms": statistics.median(pruned_ms), "ratio": statistics.median(ratios),
            "ratio_range": (min(ratios), max(ratios))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sparsity", type=float, default=0.3)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--round-to", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--models", nargs="+", default=[n for n, _, _ in MODELS])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "prune.md"))
    a = ap.parse_args(argv)
    load_before = os.getloadavg()
    t0 = time.time()
    rows = []
    for name, spec, bind in MODELS:
        if name not in a.models:
            continue
        for batch in a.batch:
            r = measure(name, spec, bind, a.sparsity, batch, a.rounds, a.repeat, a.round_to)
            print(r, flush=True)
            rows.append(r)
    lines = [f"# Channel pruning ({a.sparsity:.0%} of each free conv's channels, widths rounded to a multiple "
             f"of {a.round_to}) on TVM cpu", "",
             f"`python bench/bench_prune.py --sparsity {a.sparsity} --batch {' '.join(map(str, a.batch))} "
             f"--rounds {a.rounds} --repeat {a.repeat} --round-to {a.round_to}`", "",
             f"CPU: {_cpu()} ({os.cpu_count()} logical CPUs, TVM_NUM_THREADS="
             f"{os.environ.get('TVM_NUM_THREADS', 'default')}); load average before "
             f"{', '.join(f'{x:.2f}' for x in load_before)}, after {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
             f"(the machine is shared); {time.time() - t0:.0f} s.", "",
             "Both models compiled with TVM -O2 for this CPU, untuned; medians of per-round medians, "
             "the ratio is the median of the per-round ratios (min-max over rounds in brackets).", "",
             "| model | batch | params dense -> pruned | convs pruned | dense ms | pruned ms | pruned/dense |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['params'][0]:,} -> {r['params'][1]:,} | "
                     f"{r['pruned_layers']} | {r['dense_ms']:.3f} | {r['pruned_ms']:.3f} | {r['ratio']:.3f} "
                     f"({r['ratio_range'][0]:.3f}-{r['ratio_range'][1]:.3f}) |")
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
