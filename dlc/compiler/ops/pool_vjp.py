"""VJP rules of pooling.

Max pooling routes the cotangent to the argmax of each window with
`scatter_add_rows` (whose VJP is an embedding lookup); average pooling is a
transposed convolution with a ones kernel.  Every rule is built from
differentiable IR ops, so it can be differentiated again.  1-D pools are lifted
to 2-D (a unit H axis): there is no conv_transpose1d or max_pool1d_indices.
"""
from __future__ import annotations

from ..dims import add, known_equal, mul, prod, sub
from .conv import _fit, _ints, _need_int
from .registry import defvjp
from .vjp_util import scalar


def _pool_nd(node) -> int:
    return int(node.op.name.split("_pool")[1][0])


def _lifted_attrs(node, nd: int, kind: str) -> dict:
    """The pooling attributes of a 1-D pool lifted to 2-D (a unit H axis), or the 2-D/3-D ones."""
    a = node.attrs
    name = node.op.name
    ks = _ints(a["kernel_size"], nd, "kernel_size", name, 1)
    st = ks if a["stride"] is None else _ints(a["stride"], nd, "stride", name, 1)
    pd = _ints(a["padding"], nd, "padding", name)
    dl = _ints(a.get("dilation", 1), nd, "dilation", name, 1)
    lift = (lambda t, v: (v,) + tuple(t)) if nd == 1 else (lambda t, v: tuple(t))
    out = {"kernel_size": lift(ks, 1), "stride": lift(st, 1), "padding": lift(pd, 0),
           "dilation": lift(dl, 1), "ceil_mode": bool(a["ceil_mode"])}
    if kind == "avg":
        out["count_include_pad"] = bool(a["count_include_pad"])
        out["divisor_override"] = a.get("divisor_override")
    return out


def _lift(b, v, nd: int):
    """(..., L) -> (..., 1, L) for 1-D pools."""
    if nd > 1:
        return v
    return b.op("reshape", v, shape=v.type.shape[:-1] + (1, v.type.shape[-1]))


def _route_to_argmax(b, idx, gy, x_type, nd: int):
    """Scatter-add gy (..., *out) to the flat plane positions idx (..., *out) of x (..., *spatial)."""
    lead = x_type.shape[:-nd]
    planes = prod(lead)
    plane = _need_int(prod(x_type.shape[-nd:]), "the input plane size", "max pooling")
    per = prod(idx.type.shape[-nd:])
    flat = b.op("reshape", idx, shape=(planes, per))
    offs = b.op("mul", b.op("arange", stop=planes, dtype="int64"), b.op("full", shape=(), value=plane, dtype="int64"))
    flat = b.op("add", flat, b.op("reshape", offs, shape=(planes, 1)))
    flat = b.op("reshape", flat, shape=(mul(planes, per),))
    upd = b.op("reshape", gy, shape=(mul(planes, per), 1))
    gx = b.op("scatter_add_rows", flat, upd, num_rows=mul(planes, plane))
    return b.op("reshape", gx, shape=x_type.shape)


@defvjp("max_pool1d", "max_pool2d", "max_pool3d")
def _(b, node, g):
    x = node.inputs[0]
    nd = _pool_nd(node)
    x2 = _lift(b, x, nd)
    ndl = max(nd, 2)
    idx = b.op(f"max_pool{ndl}d_indices", x2, **_lifted_attrs(node, nd, "max"))
    gx = _route_to_argmax(b, idx, _lift(b, g[0], nd), x2.type, ndl)
    return [b.op("reshape", gx, shape=x.type.shape) if nd == 1 else gx]


@defvjp("adaptive_max_pool2d")
def _(b, node, g):
    x = node.inputs[0]
    idx = b.op("adaptive_max_pool2d_indices", x, output_size=node.attrs["output_size"])
    return [_route_to_argmax(b, idx, g[0], x.type, 2)]


def _uniform_divisor(a: dict) -> int | None:
    """The avg-pool divisor when it is the same for every window, else None."""
    if a["divisor_override"]:
        return a["divisor_override"]
    area = prod(a["kernel_size"])
    if a["ceil_mode"] or not (a["count_include_pad"] or not any(a["padding"])):
        return None
    return area


@defvjp("avg_pool1d", "avg_pool2d", "avg_pool3d")
def _(b, node, g):
    x = node.inputs[0]
    nd = _pool_nd(node)
    ndl = max(nd, 2)
    a = _lifted_attrs(node, nd, "avg")
    x2, g2 = _lift(b, x, nd), _lift(b, g[0], nd)
    sizes, outs = x2.type.shape[-ndl:], g2.type.shape[-ndl:]
    div = _uniform_divisor(a)
    dt = x.type.dtype.numpy_name
    if div is not None:
        q = b.op("div", g2, scalar(b, float(div), g2))
    else:
        # 1/divisor per window = avg_pool(ones) / sum_pool(ones): exact for every
        # mix of padding, ceil_mode, dilation and count_include_pad (each window holds >= 1 input)
        ones = b.op("full", shape=(1,) + tuple(sizes), value=1.0, dtype=dt)
        avg = b.op(f"avg_pool{ndl}d", ones, **a)
        cnt = b.op(f"avg_pool{ndl}d", ones, **{**a, "divisor_override": 1})
        q = b.op("mul", g2, b.op("div", avg, cnt))
    # the adjoint of the zero-padded window sum: a transposed convolution with a ones kernel
    ks, st, pd, dl = a["kernel_size"], a["stride"], a["padding"], a["dilation"]
    planes = prod(g2.type.shape[:-ndl])
    qr = b.op("reshape", q, shape=(planes, 1) + tuple(outs))
    ones_k = b.op("full", shape=(1, 1) + tuple(ks), value=1.0, dtype=dt)
    outpad, rest = [], []
    for i in range(ndl):
        full = add(mul(sub(outs[i], 1), st[i]), dl[i] * (ks[i] - 1) + 1)
        extra = _need_int(sub(add(sizes[i], 2 * pd[i]), full), "the input size", node.op.name)
        op_ = extra if 0 <= extra < max(st[i], dl[i]) else 0
        outpad.append(op_)
        rest.append((0, extra - op_))
    gx = b.op(f"conv_transpose{ndl}d", qr, ones_k, stride=st, padding=pd, output_padding=tuple(outpad),
              dilation=dl)
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
