"""TVM backend kernels (default schedules, no tuning) against NumPy's sgemm.

    python bench/bench_tvm_kernels.py [--repeat 15] [--quick] [--out bench/results/tvm_kernels.json]

Runs with TVM_NUM_THREADS = the number of physical cores (set here when it
is unset, before tvm is imported; OMP/MKL/OpenBLAS thread counts and torch's
follow it).  Measures, in one run:

- the peak: NumPy's BLAS sgemm GFLOP/s at 512^3 and 1024^3 (median of
  `repeat` calls after warm-up); the larger of the two is the reference;
- TVM kernels compiled by `backends/tvm/pipeline.py` for this host:
  matmul 512^3 and 1024^3, dense 1x4096 -> 1024 and 32x768 -> 3072 (written as
  ``relax.op.linear``, so the weights are packed and lifted), and conv2d
  (written NCHW/OIHW + bias + relu, so the kernel that runs is the NHWC one
  with the fused epilogue): ResNet 3x3 64ch 56x56, 3x3 512ch 7x7, 1x1
  256->64 56x56, the 7x7/2 stem on 224x224, depthwise 3x3 on 112x112x32.
  Only the compute kernel is timed (`time_evaluator`, median of `repeat`
  repeats), not the layout transposes at the model's edges;
- PyTorch eager (CPU, same thread count) for the same op in its own layout.

GFLOP/s counts 2 * multiply-adds.  Medians are reported, and best-of-repeat
figures beside them (on a shared machine other load slows multi-threaded
NumPy and torch far more than it slows the kernels, so the best-of fractions
are the steadier ones).  The target is >= 70% of the sgemm peak
for matmul and conv (the depthwise conv and the M=1 dense are memory bound
and reported for reference).  Writes JSON (temp file + os.replace) and
prints a table.  The machine is shared and noisy: the load average before
and after goes into the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def physical_cores() -> int:
    try:
        cores = set()
        phys = core = None
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                    cores.add((phys, core))
        if cores:
            return len(cores)
    except OSError:
        pass
    return os.cpu_count() or 1


NCORES = physical_cores()
os.environ.setdefault("TVM_NUM_THREADS", str(NCORES))
THREADS = int(os.environ["TVM_NUM_THREADS"])
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, str(THREADS))

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tvm
from dlc.backends.tvm import pipeline
from tvm import relax, tirx

TARGET_FRACTION = 0.70

MATMULS = [  # name, M, K, N
    ("matmul 512^3", 512, 512, 512),
    ("matmul 1024^3", 1024, 1024, 1024),
    ("dense 1x4096->1024", 1, 4096, 1024),
    ("dense 32x768->3072", 32, 768, 3072),
]
CONVS = [  # name, (C, H, W), O, k, stride, pad, groups
    ("conv 3x3 64ch 56x56", (64, 56, 56), 64, 3, 1, 1, 1),
    ("conv 3x3 512ch 7x7", (512, 7, 7), 512, 3, 1, 1, 1),
    ("conv 1x1 256->64 56x56", (256, 56, 56), 64, 1, 1, 0, 1),
    ("conv stem 7x7/2 3->64 224", (3, 224, 224), 64, 7, 2, 3, 1),
    ("depthwise 3x3 32ch 112x112", (32, 112, 112), 32, 3, 1, 1, 32),
]
MEMORY_BOUND = {"dense 1x4096->1024", "depthwise 3x3 32ch 112x112"}


def median_time(f, repeat: int, warmup: int = 3) -> tuple[float, float]:
    """(median, best) seconds of `repeat` calls after `warmup` calls."""
    for _ in range(warmup):
        f()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def numpy_peak(repeat: int) -> dict:
    rng = np.random.default_rng(0)
    out = {}
    for n in (512, 1024):
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        t, best = median_time(lambda a=a, b=b: a @ b, max(repeat, 10))
        out[f"sgemm {n}^3"] = {"ms": t * 1e3, "gflops": 2 * n ** 3 / t / 1e9,
                               "best_ms": best * 1e3, "best_gflops": 2 * n ** 3 / best / 1e9}
    time.sleep(0.5)  # let OpenBLAS's worker threads stop spinning
    return out


def _module(inputs, weights, body):
    bb = relax.BlockBuilder()
    params = list(inputs) + list(weights)
    with bb.function("main", params, attrs={"num_input": len(inputs)}):
        with bb.dataflow():
            gv = bb.emit_output(body(bb, *params))
        bb.emit_func_output(gv)
    return bb.get()


def _var(name, shape):
    return relax.Var(name, relax.TensorType(shape, "float32"))


def time_kernel(mod, target, key: str, repeat: int) -> tuple[float, float]:
    """(median, best) seconds of the scheduled PrimFunc whose name contains `key`."""
    opt = pipeline.optimize(mod, target)
    funcs = [(gv.name_hint, f) for gv, f in opt.functions_items()
             if isinstance(f, tirx.PrimFunc) and key in gv.name_hint]
    if len(funcs) != 1:
        raise RuntimeError(f"expected one {key} kernel, got {[n for n, _ in funcs]}")
    _name, f = funcs[0]
    lib = tvm.compile(tvm.IRModule({"main": f.with_attr("global_symbol", "main")}), target).jit()
    rng = np.random.default_rng(1)
    args = [tvm.runtime.tensor(rng.standard_normal([int(d) for d in p.shape]).astype(p.dtype))
            for p in f.params]
    number = 1
    t = lib.time_evaluator("main", tvm.cpu(), number=number, repeat=1)(*args).mean
    number = max(1, int(0.02 / max(t, 1e-7)))  # ~20 ms per repeat
    res = lib.time_evaluator("main", tvm.cpu(), number=number, repeat=repeat,
                             min_repeat_ms=0)(*args).results
    return statistics.median(res), min(res)


def bench_matmul(name, m, k, n, target, repeat, torch):
    mod = _module([_var("x", (m, k))], [_var("w", (n, k))],
                  lambda bb, x, w: relax.op.linear(x, w))
    t, best = time_kernel(mod, target, "matmul", repeat)
    row = {"name": name, "kind": "matmul", "shape": [m, k, n], "flops": 2 * m * k * n,
           "tvm_ms": t * 1e3, "tvm_best_ms": best * 1e3}
    if torch is not None:
        x, w = torch.randn(m, k), torch.randn(n, k)
        with torch.no_grad():
            tt, tb = median_time(lambda: torch.nn.functional.linear(x, w), repeat)
        row["torch_ms"], row["torch_best_ms"] = tt * 1e3, tb * 1e3
    return row


def bench_conv(name, chw, o, k, s, p, g, target, repeat, torch):
    c, h, w = chw
    ho = (h + 2 * p - k) // s + 1
    wo = (w + 2 * p - k) // s + 1

    def body(bb, x, wt, b):
        y = bb.emit(relax.op.nn.conv2d(x, wt, (s, s), (p, p), (1, 1), g, "NCHW", "OIHW"))
        y = bb.emit(relax.op.add(y, relax.op.reshape(b, (1, o, 1, 1))))
        return relax.op.nn.relu(y)

    mod = _module([_var("x", (1, c, h, w))], [_var("w", (o, c // g, k, k)), _var("b", (o,))], body)
    t, best = time_kernel(mod, target, "conv2d", repeat)
    flops = 2 * o * ho * wo * (c // g) * k * k
    row = {"name": name, "kind": "conv", "shape": [1, c, h, w, o, k, s, p, g], "flops": flops,
           "tvm_ms": t * 1e3, "tvm_best_ms": best * 1e3}
    if torch is not None:
        F = torch.nn.functional
        x, wt, b = torch.randn(1, c, h, w), torch.randn(o, c // g, k, k), torch.randn(o)
        with torch.no_grad():
            tt, tb = median_time(lambda: F.relu(F.conv2d(x, wt, b, s, p, 1, g)), repeat)
        row["torch_ms"], row["torch_best_ms"] = tt * 1e3, tb * 1e3
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="5 repeats")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "tvm_kernels.json"))
    args = ap.parse_args(argv)
    repeat = 5 if args.quick else args.repeat
    try:
        import torch
        torch.set_num_threads(THREADS)
    except ImportError:  # pragma: no cover
        torch = None
    load_before = os.getloadavg()
    target = pipeline.as_target("llvm")
    peak = numpy_peak(repeat)
    peak_gflops = max(v["gflops"] for v in peak.values())
    best_peak_gflops = max(v["best_gflops"] for v in peak.values())
    rows = []
    for spec in MATMULS:
        rows.append(bench_matmul(*spec, target, repeat, torch))
    for spec in CONVS:
        rows.append(bench_conv(*spec, target, repeat, torch))
    for r in rows:
        r["tvm_gflops"] = r["flops"] / (r["tvm_ms"] * 1e-3) / 1e9
        r["fraction_of_numpy_peak"] = r["tvm_gflops"] / peak_gflops
        r["tvm_best_gflops"] = r["flops"] / (r["tvm_best_ms"] * 1e-3) / 1e9
        r["best_fraction_of_best_numpy_peak"] = r["tvm_best_gflops"] / best_peak_gflops
        r["memory_bound"] = r["name"] in MEMORY_BOUND
        if "torch_ms" in r:
            r["torch_gflops"] = r["flops"] / (r["torch_ms"] * 1e-3) / 1e9
            r["tvm_speedup_vs_torch"] = r["torch_ms"] / r["tvm_ms"]
    compute = [r for r in rows if not r["memory_bound"]]
    result = {
        "threads": THREADS,
        "physical_cores": NCORES,
        "cpu": tvm.target.codegen.llvm_get_system_cpu(),
        "target": str(target),
        "machine": platform.machine(),
        "repeat": repeat,
        "numpy_sgemm": peak,
        "numpy_peak_gflops": peak_gflops,
        "numpy_best_peak_gflops": best_peak_gflops,
        "target_fraction": TARGET_FRACTION,
        "kernels": rows,
        "compute_bound_min_fraction": min(r["fraction_of_numpy_peak"] for r in compute),
        "compute_bound_min_best_fraction": min(r["best_fraction_of_best_numpy_peak"]
                                               for r in compute),
        "compute_bound_meet_target": all(r["fraction_of_numpy_peak"] >= TARGET_FRACTION
                                         for r in compute),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "versions": {"tvm": tvm.__version__, "numpy": np.__version__,
                     "torch": getattr(torch, "__version__", None)},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)

    print(f"threads {THREADS}, numpy sgemm: "
          + ", ".join(f"{k} {v['gflops']:.0f} GFLOP/s" for k, v in peak.items())
          + f"; peak = {peak_gflops:.0f} (best-of: {best_peak_gflops:.0f})")
    print("medians (best-of-repeats GFLOP/s and % of the best sgemm in brackets: less"
          " sensitive to other load)")
    print(f"{'kernel':30s} {'tvm ms':>9s} {'GFLOP/s':>8s} {'% peak':>7s} {'[best':>6s} {'%]':>5s}"
          f" {'torch ms':>9s} {'torch/tvm':>9s}")
    for r in rows:
        tms = r.get("torch_ms")
        ratio = f"{tms / r['tvm_ms']:8.2f}x" if tms else "        -"
        flag = " (memory bound)" if r["memory_bound"] else ""
        print(f"{r['name']:30s} {r['tvm_ms']:9.3f} {r['tvm_gflops']:8.0f} "
              f"{100 * r['fraction_of_numpy_peak']:6.0f}% "
              f"[{r['tvm_best_gflops']:5.0f} {100 * r['best_fraction_of_best_numpy_peak']:4.0f}%] "
              f"{(f'{tms:9.3f}' if tms else '        -')} "
              f"{ratio}{flag}")
    print(f"load average {load_before[0]:.2f} -> {result['loadavg_after'][0]:.2f}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
