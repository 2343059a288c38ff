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


# ---------------------------------------------------------------- VJP rules
from .registry import defvjp  # noqa: E402
from .vjp_util import sum_to  # noqa: E402


def _swap_last(b, x):
    axes = list(range(x.type.rank))
    axes[-1], axes[-2] = axes[-2], axes[-1]
    return b.op("transpose", x, axes=tuple(axes))


@defvjp("matmul")
def _(b, node, g):
    a, c = node.inputs
    gy = g[0]
    # promote 1-D operands to matrices, differentiate, then drop the added axis
    a2 = a if a.type.rank >= 2 else b.op("reshape", a, shape=(1,) + a.type.shape)
    c2 = c if c.type.rank >= 2 else b.op("reshape", c, shape=c.type.shape + (1,))
    out_shape = list(gy.type.shape)
    if a.type.rank == 1:
        out_shape.insert(len(out_shape) - (1 if c.type.rank >= 2 else 0), 1)
    if c.type.rank == 1:
        out_shape.append(1)
    gy2 = b.op("reshape", gy, shape=tuple(out_shape)) if tuple(out_shape) != gy.type.shape else gy
    ga = b.op("matmul", gy2, _swap_last(b, c2))
    gc = b.op("matmul", _swap_last(b, a2), gy2)
    ga = sum_to(b, ga, a2.type.shape)
    gc = sum_to(b, gc, c2.type.shape)
    if a.type.rank == 1:
        ga = b.op("reshape", ga, shape=a.type.shape)
    if c.type.rank == 1:
        gc = b.op("reshape", gc, shape=c.type.shape)
    return [ga, gc]


@defvjp("linear")
def _(b, node, g):
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    gy = g[0]
    gx = b.op("matmul", gy, w)
    gy2 = b.op("reshape", gy, shape=(-1, gy.type.shape[-1])) if gy.type.rank != 2 else gy
    x2 = b.op("reshape", x, shape=(-1, x.type.shape[-1])) if x.type.rank != 2 else x
    if gy.type.rank == 1:
        gy2 = b.op("reshape", gy, shape=(1, gy.type.shape[0]))
        x2 = b.op("reshape", x, shape=(1, x.type.shape[0]))
    gw = b.op("matmul", _swap_last(b, gy2), x2)
    gb = None
    if bias is not None:
        gb = b.op("sum", gy2, axis=0, keepdims=False)
    return [gx, gw, gb]
