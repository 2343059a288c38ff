"""`dlc bench --ops`: single kernels on the layer shapes the zoo uses, run
through dlc's torch and tvm backends, in GFLOP/s and as a share of the
machine's peak.

The peak is measured in the same run: a float32 matrix product (sgemm) of
size 512 through NumPy's BLAS, 2 n^3 FLOPs, at the start and again at the
end of the run; the peak is the fastest of those calls (the least disturbed
by other processes: on a shared machine a median sgemm says more about the
load than about the machine).  Kernel rates use their medians.  Short
kernels are preempted less often than the sgemm, so on a loaded machine a
share can exceed 1.
Each kernel is a one-op `.dln` model (batch 1), checked against the float64
NumPy reference before it is timed, like the models.  FLOP counts: 2 MACs
for convolutions and matmuls; attention 4 T^2 d per head (QK^T and AV; the
softmax is not counted); layernorm 8 and softmax 5 FLOPs per element (their
arithmetic, these kernels are memory-bound); an LSTM step 2*4H(I+H) plus
10 FLOPs per gate element."""
from __future__ import annotations

import os
import time

import numpy as np

from .bench_check import TOLERANCES, compare, reference_outputs
from .bench_env import PeakRSS, machine_record, pin_threads, summarize, time_calls
from .errors import DlcError

SUITES = ("resnet", "bert", "mobilenet", "all")
PEAK_N = 512   # ~5 ms a call on one core: long calls are preempted more often on a shared machine
PEAK_CALLS = 30


def _conv(ci, co, hw, k, stride=1, groups=1):
    pad = (k - 1) // 2
    ho = (hw + 2 * pad - k) // stride + 1
    body = f"conv2d(x, {co}, kernel={k}, stride={stride}, padding={pad}, groups={groups}, bias=false)"
    flops = 2 * co * ho * ho * (ci // groups) * k * k
    what = "depthwise" if groups == ci and groups > 1 else f"{k}x{k}"
    return (f"conv2d {what}", f"{ci}x{hw}x{hw} -> {co}x{ho}x{ho} s{stride}",
            {"x": (1, ci, hw, hw)}, (1, co, ho, ho), body, flops)


def _dense(m, k, n):
    return ("matmul", f"[{m},{k}] x [{k},{n}]", {"x": (m, k)}, (m, n), f"dense(x, {n}, bias=false)", 2 * m * k * n)


def _attention(t, heads=12, d=64):
    shp = (1, heads, t, d)
    return ("attention", f"{heads} heads, T={t}, d={d}", {"q": shp, "k": shp, "v": shp}, shp,
            "scaled_dot_product_attention(q, k, v)", 4 * heads * t * t * d)


def _lstm_step(i, h):
    return ("lstm step", f"batch 1, input {i}, hidden {h}", {"x": (1, 1, i)}, (1, 1, h),
            None, 2 * 4 * h * (i + h) + 10 * 4 * h)


# conv2d of ResNet-18 (every distinct 3x3 and the stem) and ResNet-50's bottleneck 1x1s
RESNET = [_conv(3, 64, 224, 7, 2), _conv(64, 64, 56, 3), _conv(64, 128, 56, 3, 2), _conv(128, 128, 28, 3),
          _conv(256, 256, 14, 3), _conv(512, 512, 7, 3), _conv(256, 64, 56, 1), _conv(64, 256, 56, 1),
          _conv(1024, 256, 14, 1), _conv(512, 2048, 7, 1)]
# MobileNetV2's depthwise 3x3 and pointwise 1x1 at the shapes of its stages
MOBILENET = [_conv(32, 32, 112, 3, 1, 32), _conv(144, 144, 56, 3, 1, 144), _conv(144, 144, 56, 3, 2, 144),
             _conv(576, 576, 14, 3, 1, 576), _conv(960, 960, 7, 3, 1, 960), _conv(32, 16, 112, 1),
             _conv(144, 24, 56, 1), _conv(576, 96, 14, 1), _conv(960, 320, 7, 1), _conv(320, 1280, 7, 1)]
# BERT-base at T=128: the projections and feed-forward, attention at 128 and 512, its norms, and an LSTM step
BERT = [_dense(128, 768, 768), _dense(128, 768, 3072), _dense(128, 3072, 768), _attention(128), _attention(512),
        ("layernorm", "[128, 768]", {"x": (128, 768)}, (128, 768), "layernorm(x, eps=1e-12)", 8 * 128 * 768),
        ("softmax", "[12, 128, 128]", {"x": (12, 128, 128)}, (12, 128, 128), "softmax(x, axis=-1)",
         5 * 12 * 128 * 128),
        _lstm_step(768, 768)]
_BY_SUITE = {"resnet": RESNET, "bert": BERT, "mobilenet": MOBILENET}


def suite_ops(suite: str) -> list[tuple[str, tuple]]:
    if suite not in SUITES:
        raise DlcError(f"unknown op suite '{suite}'", hint=f"choose from {', '.join(SUITES)}")
    names = ("resnet", "mobilenet", "bert") if suite == "all" else (suite,)
    return [(s, op) for s in names for op in _BY_SUITE[s]]


def op_model(op: tuple):
    """The one-op `.dln` model of a suite entry."""
    from .api import Model
    _, _, ins, out, body, _ = op
    args = ", ".join(f"{n}: f32[{', '.join(map(str, s))}]" for n, s in ins.items())
    ret = f"f32[{', '.join(map(str, out))}]"
    if body is None:   # the LSTM step: one time step of a one-layer LSTM
        text = (f"model Op({args}) -> {ret} {{\n    y, (h, c) = lstm(x, {out[-1]}, batch_first=true)\n"
                f"    return y\n}}\n")
    else:
        text = f"model Op({args}) -> {ret} {{\n    return {body}\n}}\n"
    return Model("<op suite>", "Op", text=text)


def sgemm_peak(repeat: int = PEAK_CALLS) -> dict:
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((PEAK_N, PEAK_N)).astype(np.float32) for _ in range(2))
    times = time_calls(lambda: a @ b, repeat, 2)
    s = summarize(times)
    flop = 2 * PEAK_N ** 3
    return {"n": PEAK_N, "median_ms": s["median_ms"], "iqr_ms": s["iqr_ms"], "min_ms": s["min_ms"],
            "median_gflop_per_s": flop / (s["median_ms"] / 1e3) / 1e9,
            "gflop_per_s": flop / (s["min_ms"] / 1e3) / 1e9, "how": "NumPy float32 a @ b (BLAS sgemm), fastest call"}


def bench_ops(*, suite="resnet", runtimes=("torch", "tvm"), threads=None, repeat=20, warmup=3, seed=0) -> dict:
    from .backends import get_backend
    for r in runtimes:
        get_backend(r)
    ops = suite_ops(suite)
    pinned = pin_threads(threads)
    report = {"schema": "dlc-bench/1", "kind": "ops", "suite": suite, "machine": machine_record(), "threads": pinned,
              "repeat": int(repeat), "warmup": int(warmup), "tolerances": dict(TOLERANCES),
              "reference": "NumPy interpreter, float64, -O0", "rows": []}
    start = sgemm_peak()
    for suite_name, op in ops:
        report["rows"] += _op_rows(suite_name, op, runtimes, repeat, warmup, seed)
    end = sgemm_peak()
    report["peak"] = max(start, end, key=lambda p: p["gflop_per_s"])
    report["peak_start"], report["peak_end"] = start, end
    for r in report["rows"]:
        if r["gflop_per_s"] is not None:
            r["peak_share"] = r["gflop_per_s"] / report["peak"]["gflop_per_s"]
    report["warnings"] = [f"{r['op']} {r['shape']} on {r['runtime']}: IQR {r['iqr_ms']:.3g} ms is over 10% of the "
                          f"median {r['median_ms']:.3g} ms" for r in report["rows"] if r.get("noisy")]
    report["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report["ok"] = all(r["status"] == "ok" for r in report["rows"])
    return report


def _op_rows(suite_name, op, runtimes, repeat, warmup, seed) -> list[dict]:
    from .backends import get_backend
    name, shape, _, _, _, flops = op
    m = op_model(op)
    inputs = m.random_inputs(seed)
    weights = m.init_weights(seed)
    ref = reference_outputs(m, inputs, weights, {})
    rows = []
    for rt in runtimes:
        row = {"suite": suite_name, "op": name, "shape": shape, "runtime": rt, "gflops": flops / 1e9, "status": "ok",
               "reason": None, "median_ms": None, "iqr_ms": None, "noisy": False, "gflop_per_s": None,
               "peak_share": None, "peak_mem_bytes": None}
        try:
            chk = compare(list(m.run(inputs, weights, backend=rt, seed=seed).values()), ref)
        except DlcError as e:
            rows.append({**row, "status": "error", "reason": f"{type(e).__name__}: {e}"})
            continue
        row["check"] = chk
        if not chk["ok"]:
            rows.append({**row, "status": "wrong", "reason": chk["why"]})
            continue
        be = get_backend(rt)
        g = m.optimized(m.symbolic_graph("eval"), rt, "cpu", {})
        time.sleep(0.3)   # the previous runtime's spinning threads go idle
        with PeakRSS() as mem:
            times, _ = be.bench(g, inputs, weights, repeat=repeat, warmup=warmup, seed=seed,
                                module_graph=m.module_graph() if be.uses_module_graph else None, target="cpu", bind={})
        s = summarize(times)
        gps = flops / (s["median_ms"] / 1e3) / 1e9
        rows.append({**row, "median_ms": s["median_ms"], "iqr_ms": s["iqr_ms"], "noisy": s["noisy"],
                     "gflop_per_s": gps, "peak_mem_bytes": mem.peak_bytes})
    return rows
