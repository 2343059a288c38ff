"""TVM lowering of the max-pooling argmax helpers (`max_pool2d_indices`,
`adaptive_max_pool2d_indices`), which max pooling's VJP rule scatters through.

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


def _argmax_pool(low, x, out_hw, H, W, bins, name):
    """torch's return_indices over a (kh, kw) tap grid per output position:
    `bins` is ((kh, row_of, row_ok), (kw, col_of, col_ok)) giving each tap's
    input coordinate and whether it is inside the window and the plane.

    Three plain reductions rather than one (index, value) reducer (whose
    combined select expression is slow to compile): the window max, the
    first in-window flat index holding it (ties go to the first; a window of
    only -inf takes its first in-window element), and the last NaN's index,
    which wins when there is one."""
    from tvm import te, tirx
    (kh, row_of, row_ok), (kw, col_of, col_ok) = bins
    big = tirx.max_value("int64")

    def fte(data):
        lead = len(data.shape) - 2
        is_float = str(data.dtype).startswith(("float", "bfloat"))
        shape = list(data.shape[:lead]) + list(out_hw)

        def tap(idx, ra, rb):
            i, j = idx[lead], idx[lead + 1]
            r, c = row_of(i, ra), col_of(j, rb)
            ok = tirx.And(row_ok(i, ra, r), col_ok(j, rb, c))
            rc = tirx.max(tirx.min(r, H - 1), 0)
            cc = tirx.max(tirx.min(c, W - 1), 0)
            v = data(*idx[:lead], rc, cc)
            flat = tirx.Cast("int64", r) * W + tirx.Cast("int64", c)
            return ok, v, flat

        def axes():
            return te.reduce_axis((0, kh), name="ra"), te.reduce_axis((0, kw), name="rb")

        def vmax(*idx):
            ra, rb = axes()
            ok, v, _ = tap(idx, ra, rb)
            return te.max(tirx.Select(ok, v, _lowest(data.dtype)), axis=[ra, rb])

        m = te.compute(shape, vmax, name=f"{name}_max")

        def first(*idx):
            ra, rb = axes()
            ok, v, flat = tap(idx, ra, rb)
            return te.min(tirx.Select(tirx.And(ok, v == m(*idx)), flat, big), axis=[ra, rb])

        def first_in(*idx):
            ra, rb = axes()
            ok, _, flat = tap(idx, ra, rb)
            return te.min(tirx.Select(ok, flat, big), axis=[ra, rb])

        at_max = te.compute(shape, first, name=f"{name}_first")
        # te.max starts from the lowest finite value: a window of only -inf
        # matches nothing and takes its first in-window element
        any_ = te.compute(shape, first_in, name=f"{name}_any")
        idx_first = te.compute(shape, lambda *i: tirx.Select(at_max(*i) == big, any_(*i), at_max(*i)),
                               name=f"{name}_idx")
        if not is_float:
            return idx_first

        def last_nan(*idx):
            ra, rb = axes()
            ok, v, flat = tap(idx, ra, rb)
            return te.max(tirx.Select(tirx.And(ok, tirx.isnan(v)), flat, tirx.const(-1, "int64")),
                          axis=[ra, rb])

        nan_at = te.compute(shape, last_nan, name=f"{name}_nan")
        return te.compute(shape, lambda *idx: tirx.Select(nan_at(*idx) >= 0, nan_at(*idx), idx_first(*idx)),
                          name=name)

    return low.bb.emit_te(fte, x)


@lowers("max_pool2d_indices")
def _max_pool2d_indices(low, node, args, env):
    from tvm import tirx
    from .lowering_nn import _pool_args
    _, k, s, p, d = _pool_args(low, node, 2)
    xs = node.inputs[0].type.shape
    H = low.concrete(xs[-2], "the height of a max_pool2d_indices input")
    W = low.concrete(xs[-1], "the width of a max_pool2d_indices input")
    out = [low.concrete(o, "the max_pool2d_indices output size") for o in node.outputs[0].type.shape[-2:]]

    def rows(i, a):
        return i * s[0] - p[0] + a * d[0]

    def cols(j, b):
        return j * s[1] - p[1] + b * d[1]

    def r_ok(i, a, r):
        return tirx.And(r >= 0, r < H)

    def c_ok(j, b, c):
        return tirx.And(c >= 0, c < W)

    return _argmax_pool(low, args[0], out, H, W, ((k[0], rows, r_ok), (k[1], cols, c_ok)),
                        "max_pool2d_indices")


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

    return _argmax_pool(low, args[0], [oh, ow], H, W, (axis(H, oh), axis(W, ow)),
                        "adaptive_max_pool2d_indices")
