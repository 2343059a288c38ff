"""int8 inference on TVM cpu: dlc's int8 kernels against dlc's fp32 build and
onnxruntime's own static quantization.

    python bench/bench_int8.py [--models resnet18,resnet50] [--batches 1] [--repeat 15]
                               [--calib 4] [--out bench/results/int8_speed.json]

For each model and batch, in one process, on the same weights (dlc's
`init_weights(0)`) and the same calibration batches (`--calib` batches of
standard-normal images, seeded):

    tvm_fp32   the spec compiled by dlc for the host CPU (-O2, default schedules)
    tvm_int8   the spec quantized by dlc's quantize / lower_int8 passes (per-channel int8
               weights, per-tensor uint8 activations, min-max ranges of the calibration
               batches), compiled for the host CPU: qconv2d / qdense run the packed
               AVX512-VNNI kernels (vpdpbusd) of backends/tvm/int8_*.py
    ort_int8   the PyTorch module dlc generates from the same spec, exported to ONNX
               (TorchScript exporter, opset 17), quantized by onnxruntime's
               `quantize_static` (QDQ, per-channel, QUInt8 activations, QInt8 weights,
               MinMax calibration on the same batches), run by onnxruntime
               (CPUExecutionProvider, ORT_ENABLE_ALL, intra_op_num_threads = cores)
    ort_fp32   the same ONNX model, not quantized

Each runtime runs its calls in a block of its own, after warm-up, in three
rounds; the figure is the median.  Ratios: fp32 / int8 (speed-up of int8)
and tvm_int8 / ort_int8 (<= 1 means dlc is no slower).  The dlc int8 output
is also checked against the NumPy integer reference (bit for bit) at batch 1
with --check.
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CORES = int(os.environ.get("BENCH_CORES") or os.cpu_count() or 1)
os.environ.setdefault("TVM_NUM_THREADS", str(CORES))

import numpy as np  # noqa: E402

MODELS = {"resnet18": ("specs/resnet18.dln", {}), "resnet50": ("specs/resnet50.dln", {}),
          "bert_base": ("specs/bert_base.dln", {"T": 128}),
          "lenet5": ("specs/lenet5.dln", {}), "digits_cnn": ("specs/digits_cnn.dln", {})}


def _feed(m, bind, seed):
    """Seeded inputs: standard-normal images, token ids below the vocabulary size."""
    return m.random_inputs(seed, bind=bind)


def dlc_int8_graph(m, bind, calib):
    """The spec's eval graph quantized by dlc's passes (min-max ranges over `calib`)."""
    from dlc.backends.numpy.interpreter import Interpreter
    from dlc.compiler.passes import PipelineOptions, run_pipeline
    from dlc.compiler.passes.quantize import calibration_graph
    from dlc.compiler.quant.plan import QuantPlan
    from dlc.compiler.quant.sites import observed_values
    g = m._elaborate("eval", bind)
    cg = calibration_graph(g, PipelineOptions(level=2))
    obs = observed_values(cg)
    cg.outputs, cg.output_names = list(obs.values()), list(obs)
    lo, hi = {}, {}
    weights = m.init_weights(0)
    for feed in calib:
        vals, _ = Interpreter(cg).run(feed, weights)
        for k, v in vals.items():
            lo[k] = min(lo.get(k, np.inf), float(np.min(v)))
            hi[k] = max(hi.get(k, -np.inf), float(np.max(v)))
    plan = QuantPlan(ranges={k: (lo[k], hi[k]) for k in lo})
    gq = copy.deepcopy(g)
    run_pipeline(gq, PipelineOptions(level=2, quant=plan), backend="tvm", dims=bind)
    return gq


def ort_sessions(m, weights, calib, example):
    """(fp32 session, int8 session) of the spec's torch module through ONNX."""
    import warnings

    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from dlc.backends.torch import TorchBackend
    module = TorchBackend.module(m, weights).eval()
    names = [s.name for s in m.inputs]
    targs = tuple(torch.from_numpy(np.array(example[n], copy=True)) for n in names)
    tmp = Path(tempfile.mkdtemp(prefix="bench_int8_"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, targs, str(tmp / "fp32.onnx"), dynamo=False, opset_version=17,
                          input_names=names)
        quant_pre_process(str(tmp / "fp32.onnx"), str(tmp / "prep.onnx"))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{n: f[n] for n in names} for f in calib])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(tmp / "prep.onnx"), str(tmp / "int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = CORES
    so.inter_op_num_threads = 1
    mk = lambda p: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])  # noqa: E731
    return mk(tmp / "fp32.onnx"), mk(tmp / "int8.onnx")


def _time_blocks(fns: dict, repeat: int, warmup: int) -> dict:
    """Median seconds per runtime; each runtime's calls in a block of their own, three rounds."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    per_round = max(1, -(-repeat // 3))
    for _ in range(3):
        for k, fn in fns.items():
            time.sleep(0.3)
            fn()
            for _ in range(per_round):
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_model(name, batch, repeat, warmup, n_calib, check) -> dict:
    import dlc
    from dlc.backends.tvm.compile import compile_graph
    spec, extra = MODELS[name]
    m = dlc.load(ROOT / spec)
    bind = {"N": batch, **extra}
    weights = m.init_weights(0)
    calib = [_feed(m, bind, 100 + i) for i in range(n_calib)]
    inputs = _feed(m, bind, 7)
    out = m.outputs[0].name
    t = time.perf_counter()
    g32 = m.optimize(level=2).optimized(m._elaborate("eval", bind), "tvm", "cpu", bind)
    fp32 = compile_graph(g32, "cpu", bind=bind).runner().set_weights(weights)
    t32 = time.perf_counter() - t
    t = time.perf_counter()
    gq = dlc_int8_graph(m, bind, calib)
    int8 = compile_graph(gq, "cpu", bind=bind).runner().set_weights(weights)
    t8 = time.perf_counter() - t
    ref32 = fp32.run(inputs)[out]
    q = int8.run(inputs)[out]
    if check:   # before timing: a mismatch is reported even if a peer then fails
        from dlc.backends.numpy.interpreter import Interpreter
        want, _ = Interpreter(gq).run(inputs, weights)
        print(f"  {name} b{batch}: bit-exact vs NumPy: {bool(np.array_equal(want[out], q))}", flush=True)
    row = {"model": name, "batch": batch, "compile_s": {"tvm_fp32": round(t32, 1), "tvm_int8": round(t8, 1)},
           "qconv2d": sum(1 for n in gq.walk() if n.op.name == "qconv2d"),
           "qdense": sum(1 for n in gq.walk() if n.op.name == "qdense"),
           "int8_vs_fp32_max_rel_err": float(np.abs(q - ref32).max() / (np.abs(ref32).max() + 1e-30)),
           "int8_vs_fp32_top1_agree": float(np.mean(q.argmax(-1) == ref32.argmax(-1)))}
    if check:
        row["bit_exact_vs_numpy"] = bool(np.array_equal(want[out], q))
    fns = {"tvm_fp32": lambda: fp32.run(inputs), "tvm_int8": lambda: int8.run(inputs)}
    try:
        s32, s8 = ort_sessions(m, weights, calib, inputs)
        feed = {s.name: inputs[s.name] for s in m.inputs}
        fns["ort_fp32"] = lambda: s32.run(None, feed)
        fns["ort_int8"] = lambda: s8.run(None, feed)
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        row["ort_error"] = f"{type(e).__name__}: {str(e)[:200]}"
    med = _time_blocks(fns, repeat, warmup)
    row["median_ms"] = {k: round(v * 1e3, 3) for k, v in med.items()}
    row["int8_speedup_vs_fp32"] = round(med["tvm_fp32"] / med["tvm_int8"], 3)
    if "ort_int8" in med:
        row["tvm_int8_over_ort_int8"] = round(med["tvm_int8"] / med["ort_int8"], 3)
        row["ort_int8_speedup_vs_fp32"] = round(med["ort_fp32"] / med["ort_int8"], 3)
    print(json.dumps(row), flush=True)
    return row


def machine() -> dict:
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"cpu": sh("lscpu | grep 'Model name' | sed 's/.*: *//'"), "cores": CORES,
            "threads": os.environ.get("TVM_NUM_THREADS"), "loadavg_before": os.getloadavg(),
            "python": platform.python_version(), "vnni": "avx512_vnni" in sh("grep -m1 flags /proc/cpuinfo")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,resnet50")
    ap.add_argument("--batches", default="1")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--calib", type=int, default=4)
    ap.add_argument("--check", action="store_true", help="compare dlc int8 with the NumPy reference")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    info = machine()
    rows = [bench_model(name, int(b), a.repeat, a.warmup, a.calib, a.check)
            for name in a.models.split(",") for b in a.batches.split(",")]
    info["loadavg_after"] = os.getloadavg()
    if a.out:
        from dlc.runtime.atomic import atomic_write
        atomic_write(Path(a.out), json.dumps({"machine": info, "rows": rows}, indent=1).encode())
    print(json.dumps(info))


if __name__ == "__main__":
    main()
