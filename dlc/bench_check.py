"""Check before timing: every backend and baseline is compared with the
float64 NumPy reference at -O0, on the same weights and inputs.

The error of one output is max|out - ref| / max|ref| (the worst element,
scaled by the output's magnitude, so a logit near zero does not blow it up);
a result passes when every output's error is within its dtype's tolerance.
`dlc verify` (dlc/verify*.py) is the full tool; this module is the small
comparison bench needs and `reference_outputs`/`compare` are the functions
to replace with verify's once it exists."""
from __future__ import annotations

import numpy as np

# the float32 figure covers accumulation-order differences over deep nets (BLAS vs direct convolution,
# fused vs unfused); a wrong kernel is off by far more (tests/test_bench_cmd_check.py plants one)
TOLERANCES = {"float64": 1e-10, "float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}


def reference_outputs(model, inputs: dict, weights: dict, bind: dict) -> list[np.ndarray]:
    """The model's outputs in float64 at -O0 on the NumPy interpreter."""
    outs = model.optimize(level=0).run(inputs, weights, backend="numpy", bind=bind, dtype="float64")
    return [np.asarray(v) for v in outs.values()]


def tolerance(dtype) -> float:
    return TOLERANCES.get(np.dtype(dtype).name if not isinstance(dtype, str) else dtype, TOLERANCES["float32"])


# --precision: the dtype whose tolerance a float output is held to (its storage dtype stays float32)
PRECISION_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def compare(outs: list, ref: list[np.ndarray], precision: str = "fp32") -> dict:
    """{"ok", "error", "tolerance", "dtype", "why"}: the worst output's scaled
    error.  With `precision` bf16/fp16 a float output is held to that dtype's
    tolerance: its convolutions and matmuls ran in it."""
    if len(outs) != len(ref):
        return {"ok": False, "error": None, "tolerance": None, "dtype": None,
                "why": f"{len(outs)} outputs, the reference has {len(ref)}"}
    worst = {"ok": True, "error": 0.0, "tolerance": None, "dtype": None, "why": ""}
    for i, (o, r) in enumerate(zip(outs, ref)):
        o = np.asarray(o)
        if o.shape != r.shape:
            return {"ok": False, "error": None, "tolerance": None, "dtype": str(o.dtype),
                    "why": f"output {i} has shape {o.shape}, the reference {r.shape}"}
        dt = "float32" if o.dtype.kind != "f" else PRECISION_DTYPES.get(precision, o.dtype)
        tol = tolerance(dt)
        if not np.isfinite(o.astype(np.float64)).all():
            return {"ok": False, "error": float("inf"), "tolerance": tol, "dtype": str(o.dtype),
                    "why": f"output {i} has NaN or Inf"}
        scale = float(np.abs(r).max()) if r.size else 0.0
        err = float(np.abs(o.astype(np.float64) - r).max() / max(scale, 1e-30)) if r.size else 0.0
        if worst["tolerance"] is None or err / tol > worst["error"] / worst["tolerance"]:
            worst.update(error=err, tolerance=tol, dtype=str(np.dtype(dt)) if dt != "bfloat16" else dt)
        if err > tol:
            worst.update(ok=False, why=f"output {i}: scaled error {err:.3g} > {dt} tolerance {tol:g}")
    return worst
