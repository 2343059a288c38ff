"""TVM backend: whole-model CPU inference against PyTorch eager and onnxruntime.

    python bench/bench_tvm.py [--models resnet18,mlp] [--batches 1,32] [--repeat 15]
                              [--levels 0,2] [--torch-compile]
                              [--symbolic] [--quick] [--out bench/results/tvm_models.json]

For each model and batch size, in one process and on the same weights
(dlc's `init_weights(0)`):

    tvm     the spec compiled by dlc for the host CPU with the default
            schedules (no tuning), batch bound with --bind N=<batch>, after
            dlc's pass pipeline at each level of --levels (`tvm_O<n>`;
            default: -O2 only, reported as `tvm`)
            (--symbolic: compiled once without binding N, the package a user
            gets from `dlc compile` without --bind, run at each batch size)
    torch   the PyTorch module dlc generates from the same spec, eager,
            torch.no_grad(), torch.set_num_threads(cores)
    ort     onnxruntime (CPUExecutionProvider, intra_op_num_threads=cores,
            graph optimisation level ALL) on that module exported to ONNX
            (TorchScript exporter, opset 17)
    compile (--torch-compile) that module under torch.compile (default
            mode, CPU inductor), same threads

Outputs are checked against each other first (max |a - b| / max |b| <=
1e-4 between TVM and torch).  Each timing is the median of `repeat` calls
after warm-up.  Each runtime runs its calls in a block of its own (their
thread pools spin after a call and would slow whichever ran next); the
blocks are repeated in three rounds so that drift of the machine hits all
three alike.  TVM_NUM_THREADS is set to the physical core
count before TVM is imported; torch and onnxruntime get the same count.
Ratios reported: torch / tvm and ort / tvm (> 1 means TVM is faster).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _physical_cores() -> int:
    try:
        import psutil
        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


CORES = _physical_cores()
os.environ.setdefault("TVM_NUM_THREADS", str(CORES))

import numpy as np  # noqa: E402

# name -> (spec, extra binds)
MODELS = {
    "mlp": ("specs/mlp.dln", {}),
    "lenet5": ("specs/lenet5.dln", {}),
    "resnet18": ("specs/resnet18.dln", {}),
    "resnet50": ("specs/resnet50.dln", {}),
    "mobilenet_v2": ("specs/mobilenet_v2.dln", {}),
    "bert_base": ("specs/bert_base.dln", {"T": 128}),
}


def _median_time(fn, repeat: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_model(name: str, batches: list[int], repeat: int, warmup: int, symbolic: bool,
                with_ort: bool, levels: list[int] = (2,), with_compile: bool = False) -> list[dict]:
    import torch

    import dlc
    from dlc.backends.torch import TorchBackend
    from dlc.backends.tvm.compile import compile_graph

    torch.set_num_threads(CORES)
    spec, extra = MODELS[name]
    m = dlc.load(ROOT / spec)
    weights = m.init_weights(0)
    rows = []
    sym_compiled, sym_time = None, None
    if symbolic:
        t = time.perf_counter()
        sym_compiled = compile_graph(m.graph, "cpu", bind=dict(extra))
        sym_time = time.perf_counter() - t
    for batch in batches:
        bind = {"N": batch, **extra}
        inputs = m.random_inputs(0, bind=bind)
        runners, compile_s = {}, {}
        for level in levels:
            key = "tvm" if list(levels) == [2] else f"tvm_O{level}"
            if sym_compiled is not None:
                compiled, compile_s[key] = sym_compiled, sym_time
            else:
                t = time.perf_counter()
                ml = m.optimize(level=level)
                g = ml.optimized(ml._elaborate("eval", bind), "tvm", "cpu", bind)
                compiled = compile_graph(g, "cpu", bind=bind)
                compile_s[key] = round(time.perf_counter() - t, 2)
            runners[key] = compiled.runner().set_weights(weights)
        main_key = next(iter(runners))
        runner = runners[main_key]
        tvm_out = runner.run(inputs)
        out_name = m.outputs[0].name

        module = TorchBackend.module(m, weights).eval()
        targs = [torch.from_numpy(np.array(inputs[s.name], copy=True)) for s in m.inputs]
        with torch.no_grad():
            ref = module(*targs)
        ref = (ref[0] if isinstance(ref, tuple) else ref).numpy()
        err = float(np.abs(tvm_out[out_name] - ref).max() / (np.abs(ref).max() + 1e-30))

        ort_sess = None
        ort_err = None
        if with_ort:
            try:
                import onnxruntime as ort
                f = io.BytesIO()
                import warnings
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(module, tuple(targs), f, dynamo=False, opset_version=17,
                                      input_names=[s.name for s in m.inputs])
                so = ort.SessionOptions()
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                so.intra_op_num_threads = CORES
                so.inter_op_num_threads = 1
                ort_sess = ort.InferenceSession(f.getvalue(), so, providers=["CPUExecutionProvider"])
                ort_feed = {s.name: inputs[s.name] for s in m.inputs}
                o = ort_sess.run(None, ort_feed)[0]
                ort_err = float(np.abs(o - ref).max() / (np.abs(ref).max() + 1e-30))
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                print(f"  onnxruntime unavailable for {name}: {type(e).__name__}: {str(e)[:120]}")
                ort_sess = None

        fns = {k: (lambda r=r: r.run(inputs)) for k, r in runners.items()}
        errs = {}
        for k, r in runners.items():
            o = r.run(inputs)[out_name]
            errs[k] = float(np.abs(o - ref).max() / (np.abs(ref).max() + 1e-30))

        def torch_call():
            with torch.no_grad():
                module(*targs)
        fns["torch"] = torch_call
        if with_compile:
            compiled_module = torch.compile(module)
            t = time.perf_counter()
            with torch.no_grad():
                compiled_module(*targs)
            compile_s["torch_compile"] = round(time.perf_counter() - t, 2)

            def compile_call():
                with torch.no_grad():
                    compiled_module(*targs)
            fns["compile"] = compile_call
        if ort_sess is not None:
            fns["ort"] = lambda: ort_sess.run(None, ort_feed)
        # Each runtime is timed in its own block of calls: their thread pools
        # (TVM's, torch's OpenMP, onnxruntime's) spin for a while after a
        # call, so alternating call by call would make each pay for the
        # others.  Blocks are repeated in `rounds`, after a pause, so drift
        # of the machine is spread over all three.
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        times = {k: [] for k in fns}
        rounds = 3
        per_round = max(1, -(-repeat // rounds))
        for _ in range(rounds):
            for k, fn in fns.items():
                time.sleep(0.3)
                fn()   # one untimed call wakes this runtime's threads
                for _ in range(per_round):
                    t = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"model": name, "batch": batch, "symbolic_batch": bool(symbolic),
               "compile_s": compile_s, "max_rel_err_vs_torch": errs,
               "max_rel_err_ort_vs_torch": ort_err,
               "median_ms": {k: round(v * 1e3, 3) for k, v in med.items()},
               # ratios of TVM's time to each peer's: above 1 means TVM is slower
               "tvm_over": {k: {peer: round(med[k] / med[peer], 3) for peer in ("torch", "ort", "compile")
                                if peer in med} for k in runners},
               "speedup_vs_torch": round(med["torch"] / med[main_key], 3),
               "speedup_vs_ort": round(med["ort"] / med[main_key], 3) if "ort" in med else None,
               "repeat": repeat}
        rows.append(row)
        print(f"  {name:13s} b{batch:<3d} " + "  ".join(f"{k} {v * 1e3:9.2f} ms" for k, v in med.items())
              + "  " + "  ".join(f"{k}/{peer} {r:.2f}" for k, d in row["tvm_over"].items() for peer, r in d.items())
              + f"  err {max(errs.values()):.1e}  compile {compile_s}", flush=True)
        del runner, runners, module, ort_sess
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--symbolic", action="store_true", help="compile without binding the batch")
    ap.add_argument("--no-ort", action="store_true")
    ap.add_argument("--levels", default="2", help="dlc -O levels to compile TVM at (comma-separated)")
    ap.add_argument("--torch-compile", action="store_true", help="also time the module under torch.compile")
    ap.add_argument("--quick", action="store_true", help="repeat 3, warm-up 1")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat, args.warmup = 3, 1
    models = [s for s in args.models.split(",") if s]
    batches = [int(b) for b in args.batches.split(",")]
    import tvm
    load_before = os.getloadavg()
    rows = []
    print(f"TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']}  cores={CORES}  tvm {tvm.__version__}")
    for name in models:
        rows.extend(bench_model(name, batches, args.repeat, args.warmup, args.symbolic, not args.no_ort,
                                [int(x) for x in args.levels.split(",")], args.torch_compile))
    result = {"bench": "tvm_models", "machine": platform.processor() or platform.machine(),
              "cpu": _cpu_name(), "cores": CORES, "tvm_num_threads": int(os.environ["TVM_NUM_THREADS"]),
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / (
        "tvm_models_symbolic.json" if args.symbolic else "tvm_models.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)
    print(f"wrote {out}")


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
