"""`dlc bench model.dln --backends ... --baselines ...`: dlc's backends against
independent PyTorch / onnxruntime implementations of the same model.

For each batch size: one set of weights (dlc's init, 1-D parameters and
batch-norm statistics made random) and one set of inputs; the float64 NumPy
reference at -O0 on them; then each backend and baseline in turn is checked
against that reference (a wrong result is reported as wrong and not timed)
and timed in its own block (warm-up, then `repeat` calls), with its peak
memory sampled.  The report is a JSON-able dict (fields in
docs/benchmarking.md)."""
from __future__ import annotations

import os
import time

import numpy as np

from .bench_baselines import BASELINES, BaselineUnavailable, lively_weights, make_baseline, reference_class
from .bench_check import TOLERANCES, compare, reference_outputs
from .bench_env import PeakRSS, machine_record, pin_threads, summarize, time_calls
from .errors import DlcError

BACKENDS = ("numpy", "torch", "tvm")                # the default
KNOWN_BACKENDS = (*BACKENDS, "tvm-cuda")            # tvm-cuda: on a machine with an NVIDIA GPU
SCHEMA = "dlc-bench/1"
PEAK_METHOD = ("RSS (/proc/self/statm) sampled every 1 ms during the timed block, minus the RSS at its start")
_SETTLE_S = 0.3   # between blocks: spinning worker threads of the previous runtime go idle


def parse_names(text: str | None, allowed: tuple, what: str, default: tuple) -> list[str]:
    """A comma list checked against `allowed` ("" gives none, None the default)."""
    if text is None:
        return list(default)
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise DlcError(f"unknown {what} {', '.join(repr(b) for b in bad)}", hint=f"choose from {', '.join(allowed)}")
    return names


def parse_batches(text: str | None) -> list[int]:
    if not text:
        return [1]
    try:
        out = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise DlcError(f"--batch takes a comma list of sizes, got '{text}'", hint="e.g. --batch 1,32") from None
    if not out or min(out) < 1:
        raise DlcError(f"--batch sizes must be positive, got '{text}'", hint="e.g. --batch 1,32")
    return out


def bench_compare(file, *, model=None, backends=BACKENDS, baselines=BASELINES, batches=(1,), train=False,
                  threads=None, repeat=20, warmup=3, seed=0, bind=None, opt=None, target="cpu",
                  device="cpu") -> dict:
    """Check, then time, every backend and baseline at every batch size (the
    baselines on `device`: "cuda" puts the torch modules on the GPU)."""
    from .api import load
    from .backends import get_backend
    for b in backends:
        if b not in KNOWN_BACKENDS:
            raise DlcError(f"unknown backend '{b}'", hint=f"choose from {', '.join(KNOWN_BACKENDS)}")
        get_backend(b)   # a one-line error for a backend whose package is missing
    m = load(file, model, bind, opt=opt)
    precision = m.opt.precision
    if train and precision != "fp32":
        raise DlcError(f"--train with --precision {precision} is not benchmarked yet: its check would need a "
                       "low-precision reference step", hint="drop --precision, or time the forward pass")
    if baselines:
        reference_class(m.name)   # a model without reference modules fails before anything runs
    pinned = pin_threads(threads)
    report = {"schema": SCHEMA, "kind": "models", "file": str(file), "model": m.name, "opt_level": m.opt.level,
              "precision": precision, "baseline_device": device, "target": target, "machine": machine_record(), "threads": pinned,
              "repeat": int(repeat),
              "warmup": int(warmup), "seed": seed, "batches": list(batches), "tolerances": dict(TOLERANCES),
              "reference": "NumPy interpreter, float64, -O0", "peak_memory_method": PEAK_METHOD,
              "mode": "train" if train else "eval", "rows": []}
    if train:
        from .bench_train import STEP_TOLERANCE
        report["reference"] += " (training: dlc's symbolic step)"
        report["tolerances"]["train_step_weights"] = STEP_TOLERANCE
    for batch in batches:
        bind_b = _batch_bind(m, bind, batch)
        if train:
            report["rows"] += _train_rows(m, backends, baselines, batch, bind_b, pinned["threads"], repeat, warmup,
                                          seed)
            continue
        inputs = m.random_inputs(seed, bind_b)
        weights = lively_weights(m.init_weights(seed), seed)
        ref = reference_outputs(m, inputs, weights, bind_b)
        for b in backends:
            report["rows"].append(_backend_row(m, b, batch, bind_b, inputs, weights, ref, repeat, warmup, seed, target))
        args = [inputs[v.name] for v in m._elaborate("eval", bind_b).inputs]
        for name in baselines:
            report["rows"].append(_baseline_row(m, name, batch, args, weights, ref, pinned["threads"], repeat, warmup,
                                                device))
    _ratios(report["rows"])
    report["warnings"] = [f"{r['name']} at batch {r['batch']}: IQR {r['iqr_ms']:.3g} ms is over 10% of the median "
                          f"{r['median_ms']:.3g} ms (machine load {_load(report)})"
                          for r in report["rows"] if r.get("noisy")]
    report["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report["ok"] = all(r["status"] == "ok" for r in report["rows"])
    return report


def _load(report) -> str:
    la = report["machine"]["loadavg_start"]
    return f"{la[0]:.2f} on {report['machine']['cpu']['cores']} cores" if la else "unknown"


def _batch_bind(m, bind, batch: int) -> dict:
    bind_b = dict(bind or {})
    syms = {s for v in m.symbolic_graph("eval").inputs for d in v.type.shape if not isinstance(d, int)
            for s in getattr(d, "symbols", lambda: ())()}
    if "N" in syms:
        bind_b["N"] = batch
    elif batch != 1:
        raise DlcError(f"model '{m.name}' has no batch dimension N, so --batch {batch} has no meaning",
                       hint="leave --batch out")
    return bind_b


def _row(name, kind, batch) -> dict:
    return {"name": name, "kind": kind, "mode": "eval", "batch": batch, "status": "ok", "reason": None, "check": None,
            "median_ms": None, "q1_ms": None, "q3_ms": None, "iqr_ms": None, "min_ms": None, "noisy": False,
            "throughput_per_s": None, "peak_mem_bytes": None, "ratio_to_torch_eager": None, "where": None}


def _settle():
    time.sleep(_SETTLE_S)


def _backend_row(m, b, batch, bind_b, inputs, weights, ref, repeat, warmup, seed, target) -> dict:
    from .backends import get_backend
    row = _row(b, "backend", batch)
    try:
        outs = m.run(inputs, weights, backend=b, bind=bind_b, seed=seed)
    except DlcError as e:
        return {**row, "status": "error", "reason": f"{type(e).__name__}: {e}"}
    row["check"] = compare(list(outs.values()), ref, m.opt.precision)
    if not row["check"]["ok"]:
        return {**row, "status": "wrong", "reason": row["check"]["why"]}
    be = get_backend(b)
    g = m.optimized(m.symbolic_graph("eval"), b, target, bind_b)
    module_graph = m.module_graph() if be.uses_module_graph else None
    _settle()
    with PeakRSS() as mem:
        times, info = be.bench(g, inputs, weights, repeat=repeat, warmup=warmup, seed=seed, module_graph=module_graph,
                               target=target, bind=bind_b)
    return _timed(row, times, batch, mem.peak_bytes, info.get("where"))


def _baseline_row(m, name, batch, args, weights, ref, threads, repeat, warmup, device="cpu") -> dict:
    row = _row(name, "baseline", batch)
    try:
        bl = make_baseline(name, m.name, weights, args, threads, m.opt.precision, device)
        row["check"] = compare(bl.outputs(), ref, m.opt.precision)
    except BaselineUnavailable as e:
        return {**row, "status": "unavailable", "reason": str(e)}
    if not row["check"]["ok"]:
        return {**row, "status": "wrong", "reason": row["check"]["why"]}
    _settle()
    with PeakRSS() as mem:
        times = time_calls(bl.call, repeat, warmup)
    return _timed(row, times, batch, mem.peak_bytes, bl.threads)


def _timed(row, times, batch, peak, where) -> dict:
    s = summarize(times)
    row.update({k: s[k] for k in ("median_ms", "q1_ms", "q3_ms", "iqr_ms", "min_ms", "noisy")})
    row.update(throughput_per_s=batch / (s["median_ms"] / 1e3) if s["median_ms"] > 0 else None,
               peak_mem_bytes=peak, where=where, times_ms=[float(t * 1e3) for t in times])
    return row


def _train_rows(m, backends, baselines, batch, bind_b, threads, repeat, warmup, seed) -> list[dict]:
    from .bench_train import backend_step_call, baseline_step_call, check_step, reference_step, train_setup
    setup = train_setup(m, bind_b, seed)
    weights = lively_weights(m.init_weights(seed), seed)
    ref = reference_step(m, setup, weights, bind_b, seed)
    args = [setup["inputs"][v.name] for v in m._elaborate("eval", bind_b).inputs]
    rows = []
    for kind, names in (("backend", backends), ("baseline", baselines)):
        for name in names:
            row = {**_row(name, kind, batch), "mode": "train"}
            try:
                if kind == "backend":
                    loss, new_w, call = backend_step_call(m, name, setup, weights, bind_b, seed)
                else:
                    loss, new_w, call = baseline_step_call(name, m, setup, weights, args)
            except BaselineUnavailable as e:
                rows.append({**row, "status": "unavailable", "reason": str(e)})
                continue
            except DlcError as e:
                rows.append({**row, "status": "error", "reason": f"{type(e).__name__}: {e}"})
                continue
            row["check"] = check_step(loss, new_w, ref)
            if not row["check"]["ok"]:
                rows.append({**row, "status": "wrong", "reason": row["check"]["why"]})
                continue
            _settle()
            with PeakRSS() as mem:
                times = time_calls(call, repeat, warmup)
            rows.append(_timed(row, times, batch, mem.peak_bytes, f"{threads} threads"))
    return rows


def _ratios(rows: list[dict]) -> None:
    """time / torch-eager's time at the same batch (>1: slower than torch-eager)."""
    eager = {r["batch"]: r["median_ms"] for r in rows if r["name"] == "torch-eager" and r["status"] == "ok"}
    for r in rows:
        if r["status"] == "ok" and r["batch"] in eager and eager[r["batch"]]:
            r["ratio_to_torch_eager"] = float(np.float64(r["median_ms"]) / eager[r["batch"]])
