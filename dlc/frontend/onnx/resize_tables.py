"""ONNX `Resize` as per-axis interpolation tables, computed at import time.

Resize is separable: ONNX's reference resizes one axis after the other, and
along one axis each output sample is a fixed weighted sum of input samples
(or, for tf_crop_and_resize outside the region, `extrapolation_value`).
dlc compiles static shapes, so for every resized axis the weights are known
when the model is imported: a matrix M (out x in) and an offset c (out) with
y = M @ x + c along that axis.  They are read off ONNX's own reference
implementation run on the identity (eye(in) gives M + c) and on zeros (c), so
every setting (nearest modes, antialias, cubic_coeff_a, exclude_outside,
half_pixel_symmetric, tf_crop_and_resize, keep_aspect_ratio_policy) samples
exactly where and with the weights the reference does.  The output sizes and
per-axis scales are worked out as the reference's `_interpolate_nd` does.
"""
from __future__ import annotations

import math

import numpy as np


class ResizeSettingError(ValueError):
    """A setting the reference does not define (reported by the converter at the node)."""


def text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def settings(a: dict) -> dict:
    """The node's attributes with ONNX's defaults filled in; float attributes are float32 scalars, as the
    reference (OpRun) passes them, so the coefficients are computed in the same precision."""
    return {"mode": text(a.get("mode", "nearest")),
            "ctm": text(a.get("coordinate_transformation_mode", "half_pixel")),
            "nearest_mode": text(a.get("nearest_mode", "round_prefer_floor")),
            "cubic_coeff_a": np.float32(a.get("cubic_coeff_a", -0.75)),
            "exclude_outside": bool(int(a.get("exclude_outside", 0))),
            "extrapolation_value": np.float32(a.get("extrapolation_value", 0.0)),
            "antialias": bool(int(a.get("antialias", 0))),
            "policy": text(a.get("keep_aspect_ratio_policy", "stretch"))}


def plan(shape: list, axes: list | None, scales, sizes, policy: str) -> tuple[list, list]:
    """(scale, output length) of every axis, as the reference computes them.

    `scales`/`sizes`: the node's operand (one value per axis of `axes`, or per
    axis when `axes` is None); a dimension that is not resized may be symbolic."""
    r = len(shape)
    axes = list(range(r)) if axes is None else [int(d) % r for d in axes]
    if sizes is not None:
        out = list(shape)
        for d, s in zip(axes, sizes):
            out[d] = int(s)
        scale = [out[i] / shape[i] if i in axes else 1.0 for i in range(r)]
        if policy != "stretch":
            if policy not in ("not_larger", "not_smaller"):
                raise ResizeSettingError(f"keep_aspect_ratio_policy={policy!r} is not one of stretch, not_larger, "
                                         "not_smaller")
            picked = [scale[i] for i in axes]
            s = min(picked) if policy == "not_larger" else max(picked)
            scale = [s if i in axes else 1.0 for i in range(r)]
            out = [int(s * shape[i] + 0.5) if i in axes else shape[i] for i in range(r)]   # round half up
        return scale, out
    scale = [1.0] * r
    for d, s in zip(axes, scales):
        scale[d] = float(s)
    # the reference: (scales * shape).astype(int), in float64
    out = [n if scale[i] == 1.0 else int(np.float64(scale[i]) * n) for i, n in enumerate(shape)]
    return scale, out


def is_identity(n, scale: float, m, roi: tuple | None) -> bool:
    """The reference leaves this axis as it is (its own shortcut)."""
    return (math.isclose(scale, 1.0) and (m is n or m == n)
            and (roi is None or (math.isclose(float(roi[0]), 0.0) and math.isclose(float(roi[1]), 1.0))))


def _coeff_fn(st: dict):
    from onnx.reference.ops import op_resize as ref
    mode = st["mode"]
    if mode == "nearest":
        if st["antialias"]:
            raise ResizeSettingError("antialias=1 is not defined for mode 'nearest'")
        return lambda ratio, scale: ref._nearest_coeffs(ratio, mode=st["nearest_mode"])
    if mode == "cubic":
        fn = ref._cubic_coeffs_antialias if st["antialias"] else ref._cubic_coeffs
        return lambda ratio, scale: fn(ratio, scale, A=st["cubic_coeff_a"])
    if mode == "linear":
        return ref._linear_coeffs_antialias if st["antialias"] else ref._linear_coeffs
    raise ResizeSettingError(f"mode {mode!r} is not one of nearest, linear, cubic")


def axis_table(n: int, scale: float, m: int, st: dict, roi: tuple | None) -> tuple[np.ndarray, np.ndarray]:
    """(M, c) in float64 with resize(x)[i] = sum_j M[i, j] x[j] + c[i] along one axis of length n -> m."""
    from onnx.reference.ops import op_resize as ref
    if st["ctm"] == "tf_crop_and_resize" and roi is None:
        raise ResizeSettingError("tf_crop_and_resize needs a region of interest (the roi operand)")
    fn = _coeff_fn(st)

    def run(data: np.ndarray) -> np.ndarray:
        try:
            return ref._interpolate_1d_along_axis(
                data, 1, scale, m, fn, roi=roi, extrapolation_value=st["extrapolation_value"],
                coordinate_transformation_mode=st["ctm"], exclude_outside=st["exclude_outside"])
        except ValueError as e:     # e.g. a coordinate_transformation_mode of an older opset
            raise ResizeSettingError(str(e)) from None

    with np.errstate(all="ignore"):
        both = run(np.eye(n, dtype=np.float64))         # row j: the response to input sample j (M^T + c)
        c = run(np.zeros((1, n), dtype=np.float64))[0]
    return (both - c).T, c


def gather_index(mat: np.ndarray, c: np.ndarray) -> np.ndarray | None:
    """The picked input index of each output when every row of M selects one sample with weight
    exactly 1 and c is 0 (nearest modes): then a gather, which passes NaN/inf through as the reference."""
    if c.any() or not np.all(np.count_nonzero(mat, axis=1) == 1):
        return None
    idx = np.argmax(mat != 0, axis=1)
    if not np.all(mat[np.arange(len(idx)), idx] == 1.0):
        return None
    return idx.astype(np.int64)
