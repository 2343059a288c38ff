"""Matrix products: matmul (NumPy/PyTorch batched semantics) and linear."""
from __future__ import annotations

from ...errors import ShapeError
from ..dims import mul, prod
from ..types import TensorType
from .common import broadcast_shapes, promote, require_float, same_dim
from .registry import MATMUL, defop


def _matmul(ts, attrs):
    a, b = ts
    dt = promote(a.dtype, b.dtype, "matmul")
    if a.rank == 0 or b.rank == 0:
        raise ShapeError(f"matmul needs operands of rank >= 1, got {a} and {b}", "use * for scaling")
    ka = a.shape[-1]
    kb = b.shape[-2] if b.rank >= 2 else b.shape[0]
    same_dim(ka, kb, f"matmul: inner dimensions differ: {a} @ {b} ({ka} vs {kb})",
             "the last dimension of the left operand must equal the second-to-last of the right")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2], "matmul")
    shape = batch + (a.shape[-2:-1] if a.rank >= 2 else ()) + (b.shape[-1:] if b.rank >= 2 else ())
    return TensorType(dt, shape)


def _matmul_macs(ins, outs, attrs):
    a = ins[0]
    return mul(prod(outs[0].shape), a.shape[-1])


defop("matmul", "a b", _matmul, macs=_matmul_macs, groups={MATMUL})


def _linear(ts, attrs):
    x, w = ts[0], ts[1]
    b = ts[2] if len(ts) > 2 else None
    require_float(x, "linear")
    promote(x.dtype, w.dtype, "linear")
    if w.rank != 2:
        raise ShapeError(f"linear weight must be 2-D, got {w}")
    if x.rank < 1:
        raise ShapeError(f"linear needs an input of rank >= 1, got {x}")
    same_dim(x.shape[-1], w.shape[1],
             f"dense/linear: input has {x.shape[-1]} features but the weight expects {w.shape[1]} "
             f"(input {x}, weight {w})",
             "the last dimension of the input must equal the layer's in_features")
    if b is not None and (b.rank != 1 or b.shape[0] != w.shape[0]):
        raise ShapeError(f"linear bias {b} does not match weight {w}")
    return TensorType(x.dtype, x.shape[:-1] + (w.shape[0],))


def _linear_macs(ins, outs, attrs):
    return mul(prod(outs[0].shape), ins[1].shape[1])


defop("linear", "x weight bias?", _linear, macs=_linear_macs, groups={MATMUL},
      doc="y = x @ weight.T + bias, as torch.nn.functional.linear")
