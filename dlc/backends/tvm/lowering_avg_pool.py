"""TVM lowering of average pooling with a dilation (ONNX AveragePool's dilations;
relax's avg_pool takes a dilation but divides by the kernel area): a TE window
sum over the zero-padded input, divided by the per-position tap count that
`compiler.ops.pool.avg_pool_counts` defines (a compile-time constant), or by
divisor_override."""
from __future__ import annotations

import numpy as np

from ...compiler.ops.pool import avg_pool_counts


def _window_sum(x, nd, kernel, strides, dilation, pad_before, out_sp):
    """sum over each window of x's last nd axes; taps outside x read 0."""
    from tvm import te, tirx
    lead = len(x.shape) - nd
    raxes = [te.reduce_axis((0, k), name=f"r{i}") for i, k in enumerate(kernel)]

    def window(*i):
        at, conds = list(i[:lead]), []
        for a in range(nd):
            c = i[lead + a] * strides[a] - pad_before[a] + raxes[a] * dilation[a]
            conds += [c >= 0, c < x.shape[lead + a]]
            at.append(tirx.max(tirx.min(c, x.shape[lead + a] - 1), 0))
        v = tirx.if_then_else(tirx.all(*conds), x(*at), tirx.const(0, x.dtype))
        return te.sum(v, axis=raxes)
    return te.compute(list(x.shape[:lead]) + list(out_sp), window, name="avg_pool_window_sum")


def dilated_avg_pool(low, node, x, nd, k, s, p, d):
    """The lowering of avg_pool{nd}d when some dilation is not 1 (x: the input expr, any leading axes,
    the spatial ones last; an NHWC node's caller passes the NCHW view)."""
    from .lowering import _op, out_dtype
    a = node.attrs
    spatial = slice(1, 1 + nd) if node.attrs.get("layout", "NCHW") == "NHWC" else slice(-nd, None)
    sizes = [low.concrete(n, f"the spatial size of a dilated {node.op.name} input")
             for n in node.inputs[0].type.shape[spatial]]
    out = [low.concrete(o, f"the {node.op.name} output size") for o in node.outputs[0].type.shape[spatial]]
    total = low.bb.emit_te(lambda t: _window_sum(t, nd, k, s, d, p, out), x, primfunc_name_hint="avg_pool_dilated")
    dt = out_dtype(node)
    if a.get("divisor_override"):
        div = np.asarray(a["divisor_override"], dt)
    else:
        div = np.ones((), dt)
        for i in range(nd):
            counts = np.asarray(avg_pool_counts(sizes[i], k[i], s[i], p[i], d[i], out[i],
                                                bool(a["count_include_pad"])), dt)
            div = np.multiply.outer(div, counts)
    return low.emit(_op().divide(total, low.const(div, dt)))
