"""Pooling (max, average, adaptive), with PyTorch's argument conventions, and
the argmax-index ops max pooling's VJP uses.  Inputs are batched (N, C, L),
(N, C, H, W) or (N, C, D, H, W), or unbatched (C, ...), as torch accepts.
Average pooling also takes a `dilation` (ONNX's AveragePool has one; torch's
avg_pool does not): its taps are spread like max pooling's, and the divisor
counts the taps, not the span.  The VJP rules are in `pool_vjp`.
"""
from __future__ import annotations

from ...errors import ShapeError
from ..types import DType, TensorType
from .common import conv_out, pair, require_float
from .conv import _SPATIAL, _ints
from .registry import POOL, defop, required

def _pool_input(x: TensorType, nd: int, name: str):
    if x.rank not in (nd + 1, nd + 2):
        raise ShapeError(f"{name} expects a rank-{nd + 2} input (N, C, {_SPATIAL[nd]}) or rank {nd + 1} "
                         f"without the batch, got {x}", "reshape the input to (N, C, ...)")


def _pool(nd: int, kind: str):
    name = f"{kind}_pool{nd}d"

    def infer(ts, attrs):
        x = ts[0]
        _pool_input(x, nd, name)
        if kind == "avg":
            require_float(x, name)
        elif x.dtype.short == "bool":
            raise ShapeError(f"{name} is not defined on bool tensors, got {x}")
        ks = _ints(attrs["kernel_size"], nd, "kernel_size", name, 1)
        stride = ks if attrs["stride"] is None else _ints(attrs["stride"], nd, "stride", name, 1)
        padding = _ints(attrs["padding"], nd, "padding", name)
        dilation = _ints(attrs.get("dilation", 1), nd, "dilation", name, 1)
        div = attrs.get("divisor_override")
        if div is not None and (isinstance(div, bool) or not isinstance(div, int) or div <= 0):
            raise ShapeError(f"{name}: divisor_override must be a positive int or None, got {div!r}")
        for k, p in zip(ks, padding):
            if p > k // 2:
                raise ShapeError(f"{name}: padding {attrs['padding']!r} is more than half the kernel size "
                                 f"{attrs['kernel_size']!r} (input {x})", f"use padding <= {k // 2}")
        spatial = x.shape[-nd:]
        out = tuple(conv_out(spatial[i], ks[i], stride[i], padding[i], dilation[i], f"{name} (input {x})",
                             ceil=bool(attrs["ceil_mode"])) for i in range(nd))
        return x.with_shape(x.shape[:-nd] + out)

    return infer


_MAX_ATTRS = {"kernel_size": required(), "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}
for _nd in (1, 2, 3):
    defop(f"max_pool{_nd}d", "x", _pool(_nd, "max"), attrs=_MAX_ATTRS,
          groups={POOL}, doc=f"{_nd}-D max pooling, torch.nn.functional.max_pool{_nd}d.")
    defop(f"avg_pool{_nd}d", "x", _pool(_nd, "avg"),
          attrs={"kernel_size": required(), "stride": None, "padding": 0, "ceil_mode": False,
                 "count_include_pad": True, **({"divisor_override": None} if _nd > 1 else {}), "dilation": 1},
          groups={POOL}, doc=f"{_nd}-D average pooling, torch.nn.functional.avg_pool{_nd}d; with a `dilation` "
                             "(ONNX AveragePool's dilations) the divisor counts the window's taps.")


def _adaptive(nd: int, kind: str):
    name = f"adaptive_{kind}_pool{nd}d"

    def infer(ts, attrs):
        x = ts[0]
        _pool_input(x, nd, name)
        if kind == "avg":
            require_float(x, name)
        size = pair(attrs["output_size"], nd, f"{name}: output_size")
        out = []
        for s, d in zip(size, x.shape[-nd:]):
            if s is None:
                out.append(d)
            elif isinstance(s, bool) or not isinstance(s, int) or s <= 0:
                raise ShapeError(f"{name}: output_size must be positive int(s) or None, "
                                 f"got {attrs['output_size']!r} (input {x})", "e.g. output_size=1 for global pooling")
            else:
                out.append(s)
        return x.with_shape(x.shape[:-nd] + tuple(out))

    return infer


for _nd, _kind in ((1, "avg"), (2, "avg"), (2, "max")):
    defop(f"adaptive_{_kind}_pool{_nd}d", "x", _adaptive(_nd, _kind), attrs={"output_size": required()},
          groups={POOL}, doc=f"Adaptive {_kind} pooling to a fixed {_nd}-D output size.")


# backward helper ops ----------------------------------------------------------


def _indices_of(infer):
    def rule(ts, attrs):
        return TensorType(DType.i64, infer(ts, attrs).shape)
    return rule


_FLAT = {2: "h*W + w", 3: "(d*H + h)*W + w"}
for _nd in (2, 3):
    defop(f"max_pool{_nd}d_indices", "x", _indices_of(_pool(_nd, "max")), attrs=_MAX_ATTRS,
          groups={POOL}, nondiff=True, builtin=f"internal: the VJP of max_pool{_nd}d makes it",
          doc=f"The argmax of each max_pool{_nd}d window as an i64 flat index {_FLAT[_nd]} into the input "
              "plane (torch's return_indices; ties go to the first maximum).  Not differentiable.")
defop("adaptive_max_pool2d_indices", "x", _indices_of(_adaptive(2, "max")), attrs={"output_size": required()},
      groups={POOL}, nondiff=True, builtin="internal: the VJP of adaptive_max_pool2d makes it",
      doc="The argmax of each adaptive_max_pool2d bin as an i64 flat index h*W + w into the input plane "
          "(torch's return_indices).  Not differentiable.")


def avg_pool_counts(size: int, k: int, s: int, p: int, d: int, out: int, count_include_pad: bool) -> list[int]:
    """The divisor of each output position along one axis of average pooling: the
    window's taps that count (torch's rule, and ONNX AveragePool's with a
    dilation).  A tap in the ceil_mode overhang never counts; one in the padding
    only with count_include_pad.  Backends without a native dilated average
    pooling divide a window sum by the outer product of these."""
    counts = []
    for o in range(out):
        taps = [o * s - p + j * d for j in range(k)]
        if count_include_pad:
            counts.append(sum(t < size + p for t in taps))
        else:
            counts.append(sum(0 <= t < size for t in taps))
    return counts
