"""TVM cpu inference under --precision bf16 (and fp16) against fp32, same process.

    python bench/bench_precision.py [--models mlp,resnet50] [--big resnet50,bert_base]
                                    [--precisions bf16,fp16] [--repeat 9] [--out bench/results/precision.json]

For every model of bench/bench_tvm.py (mlp, lenet5, resnet18, resnet50,
mobilenet_v2, bert_base at T=128) at batch 1, and the `--big` ones also at
batch 32: dlc compiles the model for the host CPU at -O2 once in fp32 and
once per precision (the autocast pass), the batch bound, default schedules.
Outputs are compared with fp32 first (max |a - b| / max |fp32|).  Timings
are medians of `repeat` calls after warm-up, each variant timed in its own
block, blocks repeated in three rounds (as bench_tvm.py: TVM's thread pool
spins after a call).  Ratio = fp32 median / low-precision median (> 1: the
low precision is faster).  CPU model and load averages are recorded: the
machine is shared.
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
sys.path.insert(0, str(ROOT / "bench"))

# bench_tvm sets TVM_NUM_THREADS to the core count before anything imports TVM
import numpy as np
from bench_tvm import CORES, MODELS, _cpu_name


def _compile(m, precision, bind):
    from dlc.backends.tvm.compile import compile_graph
    t = time.perf_counter()
    ml = m.optimize(level=2, precision=precision)
    g = ml.optimized(ml._elaborate("eval", bind), "tvm", "cpu", bind)
    compiled = compile_graph(g, "cpu", bind=bind)
    return compiled, round(time.perf_counter() - t, 1)


def bench_one(name: str, batch: int, precisions: list[str], repeat: int, warmup: int) -> dict:
    import dlc
    spec, extra = MODELS[name]
    m = dlc.load(ROOT / spec)
    bind = {"N": batch, **extra}
    weights, inputs = m.init_weights(0), m.random_inputs(0, bind=bind)
    out_name = m.outputs[0].name
    runners, compile_s, errs = {}, {}, {}
    for p in ["fp32"] + precisions:
        compiled, compile_s[p] = _compile(m, p, bind)
        runners[p] = compiled.runner().set_weights(weights)
    ref = runners["fp32"].run(inputs)[out_name]
    for p in precisions:
        o = runners[p].run(inputs)[out_name]
        errs[p] = float(np.abs(o - ref).max() / (np.abs(ref).max() + 1e-30))
    for r in runners.values():
        for _ in range(warmup):
            r.run(inputs)
    times = {p: [] for p in runners}
    per_round = max(1, -(-repeat // 3))
    for _ in range(3):
        for p, r in runners.items():
            time.sleep(0.2)
            r.run(inputs)                  # wakes this library's threads, untimed
            for _ in range(per_round):
                t = time.perf_counter()
                r.run(inputs)
                times[p].append(time.perf_counter() - t)
    med = {p: statistics.median(v) for p, v in times.items()}
    row = {"model": name, "batch": batch, "median_ms": {p: round(v * 1e3, 3) for p, v in med.items()},
           "ratio_fp32_over": {p: round(med["fp32"] / med[p], 3) for p in precisions},
           "max_rel_err_vs_fp32": errs, "compile_s": compile_s, "loadavg": os.getloadavg()}
    print(f"  {name:13s} b{batch:<3d} " + "  ".join(f"{p} {v * 1e3:9.2f} ms" for p, v in med.items())
          + "  " + "  ".join(f"fp32/{p} {r:.2f}" for p, r in row["ratio_fp32_over"].items())
          + f"  err {errs}  compile {compile_s}  load {os.getloadavg()[0]:.1f}", flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--big", default="resnet50,bert_base", help="models also timed at batch 32")
    ap.add_argument("--precisions", default="bf16")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "precision.json"))
    args = ap.parse_args(argv)
    import tvm
    precisions = [p for p in args.precisions.split(",") if p]
    jobs = [(n, 1) for n in args.models.split(",") if n] + [(n, 32) for n in args.big.split(",") if n]
    print(f"{_cpu_name()}  TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']}  cores={CORES}  tvm {tvm.__version__}"
          f"  load {os.getloadavg()}", flush=True)
    out = Path(args.out)
    result = {"bench": "precision", "cpu": _cpu_name(), "cores": CORES, "loadavg_before": os.getloadavg(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "rows": []}
    for name, batch in jobs:
        result["rows"].append(bench_one(name, batch, precisions, args.repeat, args.warmup))
        result["loadavg_after"] = os.getloadavg()
        tmp = out.with_suffix(".json.tmp")       # written after every row: a long run keeps what it measured
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
