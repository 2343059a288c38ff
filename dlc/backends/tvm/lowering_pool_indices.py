"""TVM lowering of the max-pooling argmax helpers (`max_pool2d_indices`,
`max_pool3d_indices`, `adaptive_max_pool2d_indices`), which max pooling's VJP rule scatters through.

Registered into `lowering.LOWERING`; see that module for the conventions.

They are TE reductions matching torch's return_indices: the first maximum in
row-major window order, the last NaN when there is one, the first in-window
element for a window of only -inf; padding taps never win.
"""
from __future__ import annotations

from .lowering import lowers


# ---------------------------------------------------------------------------
# max-pooling argmax (torch's return_indices)
# ---------------------------------------------------------------------------

def _lowest(dtype):
    from tvm import tirx
    if str(dtype).startswith(("float", "bfloat")):
        return tirx.FloatImm(str(dtype), float("-inf"))
    return tirx.min_value(dtype)


def _argmax_pool(low, x, out_sp, sizes, bins, name):
    """torch's return_indices over a tap grid per output position: `bins` has one
    (k, coord_of, ok) per spatial axis giving each tap's input coordinate and
    whether it is inside the window and the input; `sizes` the spatial sizes.

    Three plain reductions rather than one (index, value) reducer (whose
    combined select expression is slow to compile): the window max, the
    first in-window flat index holding it (ties go to the first; a window of
    only -inf takes its first in-window element), and the last NaN's index,
    which wins when there is one."""
    from tvm import te, tirx
    nd = len(sizes)
    big = tirx.max_value("int64")

    def fte(data):
        lead = len(data.shape) - nd
        is_float = str(data.dtype).startswith(("float", "bfloat"))
        shape = list(data.shape[:lead]) + list(out_sp)

        def tap(idx, raxes):
            ok, at, flat = None, [], tirx.const(0, "int64")
            for i, ((_, coord_of, ok_of), r, n) in enumerate(zip(bins, raxes, sizes)):
                c = coord_of(idx[lead + i], r)
                ok_i = ok_of(idx[lead + i], r, c)
                ok = ok_i if ok is None else tirx.And(ok, ok_i)
                at.append(tirx.max(tirx.min(c, n - 1), 0))
                flat = flat * n + tirx.Cast("int64", c)
            return ok, data(*idx[:lead], *at), flat

        def axes():
            return [te.reduce_axis((0, k), name=f"r{i}") for i, (k, _, _) in enumerate(bins)]

        def vmax(*idx):
            ra = axes()
            ok, v, _ = tap(idx, ra)
            return te.max(tirx.Select(ok, v, _lowest(data.dtype)), axis=ra)

        m = te.compute(shape, vmax, name=f"{name}_max")

        def first(*idx):
            ra = axes()
            ok, v, flat = tap(idx, ra)
            return te.min(tirx.Select(tirx.And(ok, v == m(*idx)), flat, big), axis=ra)

        def first_in(*idx):
            ra = axes()
            ok, _, flat = tap(idx, ra)
            return te.min(tirx.Select(ok, flat, big), axis=ra)

        at_max = te.compute(shape, first, name=f"{name}_first")
        # te.max starts from the lowest finite value: a window of only -inf
        # matches nothing and takes its first in-window element
        any_ = te.compute(shape, first_in, name=f"{name}_any")
        idx_first = te.compute(shape, lambda *i: tirx.Select(at_max(*i) == big, any_(*i), at_max(*i)),
                               name=f"{name}_idx")
        if not is_float:
            return idx_first

        def last_nan(*idx):
            ra = axes()
            ok, v, flat = tap(idx, ra)
            return te.max(tirx.Select(tirx.And(ok, tirx.isnan(v)), flat, tirx.const(-1, "int64")), axis=ra)

        nan_at = te.compute(shape, last_nan, name=f"{name}_nan")
        return te.compute(shape, lambda *idx: tirx.Select(nan_at(*idx) >= 0, nan_at(*idx), idx_first(*idx)),
                          name=name)

    return low.bb.emit_te(fte, x)


@lowers("max_pool2d_indices", "max_pool3d_indices")
def _max_pool_indices(low, node, args, env):
    from tvm import tirx
    from .lowering_nn import _pool_args
    nd = int(node.op.name[len("max_pool")])
    _, k, s, p, d = _pool_args(low, node, nd)
    name = node.op.name
    sizes = [low.concrete(n, f"the spatial size of a {name} input") for n in node.inputs[0].type.shape[-nd:]]
    out = [low.concrete(o, f"the {name} output size") for o in node.outputs[0].type.shape[-nd:]]

    def axis(i):
        def coord(o, a):
            return o * s[i] - p[i] + a * d[i]

        def ok(o, a, c):
            return tirx.And(c >= 0, c < sizes[i])
        return k[i], coord, ok

    return _argmax_pool(low, args[0], out, sizes, [axis(i) for i in range(nd)], name)


@lowers("adaptive_max_pool2d_indices")
def _adaptive_max_pool2d_indices(low, node, args, env):
    from tvm import tirx
    xs = node.inputs[0].type.shape
    H = low.concrete(xs[-2], "the height of an adaptive_max_pool2d_indices input")
    W = low.concrete(xs[-1], "the width of an adaptive_max_pool2d_indices input")
    oh, ow = (low.concrete(o, "the adaptive pooling output size") for o in node.outputs[0].type.shape[-2:])

    def axis(n, o):
        starts = [(i * n) // o for i in range(o)]
        ends = [-((-(i + 1) * n) // o) for i in range(o)]
        kmax = max(e - s for s, e in zip(starts, ends))

        def coord(i, a):
            return tirx.floordiv(i * n, o) + a

        def ok(i, a, r):
            end = tirx.floordiv((i + 1) * n + o - 1, o)
            return r < end

        return kmax, coord, ok

    return _argmax_pool(low, args[0], [oh, ow], [H, W], [axis(H, oh), axis(W, ow)],
                        "adaptive_max_pool2d_indices")
