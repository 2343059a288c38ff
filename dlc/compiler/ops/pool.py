"""Pooling (max, average, adaptive), with PyTorch's argument conventions, and
the argmax-index ops max pooling's VJP uses.  Inputs are batched (N, C, L) or
(N, C, H, W), or unbatched (C, ...), as torch accepts.
"""
from __future__ import annotations

from ...errors import ShapeError
from ..dims import add, known_equal, mul, prod, sub
from ..types import DType, TensorType
from .common import conv_out, pair, require_float
from .conv import _SPATIAL, _fit, _ints, _need_int
from .registry import POOL, defop, defvjp, required
from .vjp_util import scalar

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


for _nd in (1, 2):
    defop(f"max_pool{_nd}d", "x", _pool(_nd, "max"),
          attrs={"kernel_size": required(), "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False},
          groups={POOL}, doc=f"{_nd}-D max pooling, torch.nn.functional.max_pool{_nd}d.")
    defop(f"avg_pool{_nd}d", "x", _pool(_nd, "avg"),
          attrs={"kernel_size": required(), "stride": None, "padding": 0, "ceil_mode": False,
                 "count_include_pad": True, **({"divisor_override": None} if _nd == 2 else {})},
          groups={POOL}, doc=f"{_nd}-D average pooling, torch.nn.functional.avg_pool{_nd}d.")


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


defop("max_pool2d_indices", "x", _indices_of(_pool(2, "max")),
      attrs={"kernel_size": required(), "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False},
      groups={POOL}, nondiff=True, builtin="internal: the VJP of max_pool2d makes it",
      doc="The argmax of each max_pool2d window as an i64 flat index h*W + w into the input plane "
          "(torch's return_indices; ties go to the first maximum).  Not differentiable.")
defop("adaptive_max_pool2d_indices", "x", _indices_of(_adaptive(2, "max")), attrs={"output_size": required()},
      groups={POOL}, nondiff=True, builtin="internal: the VJP of adaptive_max_pool2d makes it",
      doc="The argmax of each adaptive_max_pool2d bin as an i64 flat index h*W + w into the input plane "
          "(torch's return_indices).  Not differentiable.")



# ---------------------------------------------------------------- VJP rules
# Max pooling routes the cotangent to the argmax of each window with
# `scatter_add_rows` (whose VJP is an embedding lookup); average pooling is a
# transposed convolution with a ones kernel.  Every rule is built from
# differentiable IR ops, so it can be differentiated again.
def _pool_attrs_2d(node, nd: int, kind: str) -> dict:
    """The pooling attributes of a 1-D pool lifted to 2-D (a unit H axis), or the 2-D ones."""
    a = node.attrs
    name = node.op.name
    ks = _ints(a["kernel_size"], nd, "kernel_size", name, 1)
    st = ks if a["stride"] is None else _ints(a["stride"], nd, "stride", name, 1)
    pd = _ints(a["padding"], nd, "padding", name)
    lift = (lambda t, v: (v,) + tuple(t)) if nd == 1 else (lambda t, v: tuple(t))
    out = {"kernel_size": lift(ks, 1), "stride": lift(st, 1), "padding": lift(pd, 0),
           "ceil_mode": bool(a["ceil_mode"])}
    if kind == "max":
        out["dilation"] = lift(_ints(a["dilation"], nd, "dilation", name, 1), 1)
    else:
        out["count_include_pad"] = bool(a["count_include_pad"])
        out["divisor_override"] = a.get("divisor_override")
    return out


def _lift(b, v, nd: int):
    """(..., L) -> (..., 1, L) for 1-D pools."""
    if nd == 2:
        return v
    return b.op("reshape", v, shape=v.type.shape[:-1] + (1, v.type.shape[-1]))


def _route_to_argmax(b, idx, gy, x_type):
    """Scatter-add gy (..., Ho, Wo) to the flat plane positions idx (..., Ho, Wo) of x (..., H, W)."""
    lead = x_type.shape[:-2]
    planes = prod(lead)
    hw = _need_int(mul(x_type.shape[-2], x_type.shape[-1]), "the input plane size", "max pooling")
    per = mul(idx.type.shape[-2], idx.type.shape[-1])
    flat = b.op("reshape", idx, shape=(planes, per))
    offs = b.op("mul", b.op("arange", stop=planes, dtype="int64"), b.op("full", shape=(), value=hw, dtype="int64"))
    flat = b.op("add", flat, b.op("reshape", offs, shape=(planes, 1)))
    flat = b.op("reshape", flat, shape=(mul(planes, per),))
    upd = b.op("reshape", gy, shape=(mul(planes, per), 1))
    gx = b.op("scatter_add_rows", flat, upd, num_rows=mul(planes, hw))
    return b.op("reshape", gx, shape=x_type.shape)


@defvjp("max_pool1d", "max_pool2d")
def _(b, node, g):
    x = node.inputs[0]
    nd = 1 if node.op.name == "max_pool1d" else 2
    x2 = _lift(b, x, nd)
    idx = b.op("max_pool2d_indices", x2, **_pool_attrs_2d(node, nd, "max"))
    gx = _route_to_argmax(b, idx, _lift(b, g[0], nd), x2.type)
    return [b.op("reshape", gx, shape=x.type.shape) if nd == 1 else gx]


@defvjp("adaptive_max_pool2d")
def _(b, node, g):
    x = node.inputs[0]
    idx = b.op("adaptive_max_pool2d_indices", x, output_size=node.attrs["output_size"])
    return [_route_to_argmax(b, idx, g[0], x.type)]


def _uniform_divisor(a: dict) -> int | None:
    """The avg-pool divisor when it is the same for every window, else None."""
    if a["divisor_override"]:
        return a["divisor_override"]
    area = a["kernel_size"][0] * a["kernel_size"][1]
    if a["ceil_mode"] or not (a["count_include_pad"] or not any(a["padding"])):
        return None
    return area


@defvjp("avg_pool1d", "avg_pool2d")
def _(b, node, g):
    x = node.inputs[0]
    nd = 1 if node.op.name == "avg_pool1d" else 2
    a = _pool_attrs_2d(node, nd, "avg")
    x2, g2 = _lift(b, x, nd), _lift(b, g[0], nd)
    sizes, outs = x2.type.shape[-2:], g2.type.shape[-2:]
    div = _uniform_divisor(a)
    if div is not None:
        q = b.op("div", g2, scalar(b, float(div), g2))
    else:
        # 1/divisor per window = avg_pool(ones) / sum_pool(ones): exact for every
        # mix of padding, ceil_mode and count_include_pad (each window holds >= 1 input)
        ones = b.op("full", shape=(1,) + tuple(sizes), value=1.0, dtype=x.type.dtype.numpy_name)
        avg = b.op("avg_pool2d", ones, **a)
        cnt = b.op("avg_pool2d", ones, **{**a, "divisor_override": 1})
        q = b.op("mul", g2, b.op("div", avg, cnt))
    # the adjoint of the zero-padded window sum: a transposed convolution with a ones kernel
    ks, st, pd = a["kernel_size"], a["stride"], a["padding"]
    planes = prod(g2.type.shape[:-2])
    qr = b.op("reshape", q, shape=(planes, 1) + tuple(outs))
    ones_k = b.op("full", shape=(1, 1) + tuple(ks), value=1.0, dtype=x.type.dtype.numpy_name)
    outpad, rest = [], []
    for i in range(2):
        full = add(mul(sub(outs[i], 1), st[i]), ks[i])
        extra = _need_int(sub(add(sizes[i], 2 * pd[i]), full), "the input size", node.op.name)
        op_ = extra if 0 <= extra < st[i] else 0
        outpad.append(op_)
        rest.append((0, extra - op_))
    gx = b.op("conv_transpose2d", qr, ones_k, stride=st, padding=pd, output_padding=tuple(outpad))
    gx = _fit(b, gx, rest)
    return [b.op("reshape", gx, shape=x.type.shape)]


def _adaptive_avg_matrix_t(b, n, out, like):
    """(n, out): column i averages adaptive bin i, i.e. adaptive_avg_pool1d of the identity."""
    eye = b.op("one_hot", b.op("arange", stop=n, dtype="int64"), num_classes=n, dtype=like.type.dtype.numpy_name)
    return b.op("adaptive_avg_pool1d", eye, output_size=out)


@defvjp("adaptive_avg_pool1d", "adaptive_avg_pool2d")
def _(b, node, g):
    x = node.inputs[0]
    nd = 1 if node.op.name == "adaptive_avg_pool1d" else 2
    gy = g[0]
    sizes, outs = x.type.shape[-nd:], gy.type.shape[-nd:]
    gx = gy
    # adaptive average pooling is separable: x -> A_h x A_w^T; its adjoint is A_h^T g A_w
    if known_equal(sizes[-1], outs[-1]) is not True:
        gx = b.op("matmul", gx, b.op("transpose", _adaptive_avg_matrix_t(b, sizes[-1], outs[-1], x), axes=(1, 0)))
    if nd == 2 and known_equal(sizes[0], outs[0]) is not True:
        gx = b.op("matmul", _adaptive_avg_matrix_t(b, sizes[0], outs[0], x), gx)
    return [gx]
