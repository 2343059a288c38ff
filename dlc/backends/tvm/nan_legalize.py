"""NaN-propagating legalizations of the relax ops whose TOPI forms drop NaN.

TOPI lowers `maximum`, `minimum`, `relu`, the `max`/`min` reductions and max
pooling to TIR's `max`/`min`, which LLVM emits as `a > b ? a : b`: a NaN
operand on the left is lost, so `relu(NaN)` is 0 and a diverged model looks
healthy.  Their reductions also start from the largest finite value, so the
max of a row of -inf is -FLT_MAX; `argmax` starts from index -1 and never moves
on a row of -inf or NaN.  PyTorch (and dlc's NumPy reference) propagate NaN,
take a row of -inf's max to be -inf, and have argmax/argmin treat NaN as the
extreme value and pick the first index on ties.

These legalizations (passed to `LegalizeOps`) compute the same ops with
compare-and-select forms: one compare, one select (and an `isnan`, i.e. a
self-compare, when the other operand may be NaN), which vectorise like
`max`.  Only floating-point operands change; integers keep TOPI's lowering.
"""
from __future__ import annotations

import math

from tvm import te, tirx, topi
from tvm.relax.transform.legalize_ops.common import _is_relax_expr, _try_convert_to_scalar_const


def _is_float(dtype) -> bool:
    return str(dtype).startswith(("float", "bfloat"))


def _dtype(e) -> str:
    """The dtype of a PrimExpr (its type) or a te.Tensor."""
    ty = getattr(e, "ty", None)
    return str(ty.dtype) if ty is not None and hasattr(ty, "dtype") else str(e.dtype)


def _may_be_nan(e) -> bool:
    return not (isinstance(e, tirx.FloatImm) and not math.isnan(e.value)) and not isinstance(e, tirx.IntImm)


def nan_max(a, b):
    """max(a, b) that returns NaN when either is NaN (torch.maximum)."""
    if not _is_float(_dtype(a)):
        return tirx.max(a, b)
    if not _may_be_nan(a):          # keep the possibly-NaN operand on the left
        a, b = b, a
    take_b = a < b if not _may_be_nan(b) else tirx.Or(a < b, tirx.isnan(b))
    return tirx.Select(take_b, b, a)


def nan_min(a, b):
    """min(a, b) that returns NaN when either is NaN (torch.minimum)."""
    if not _is_float(_dtype(a)):
        return tirx.min(a, b)
    if not _may_be_nan(a):
        a, b = b, a
    take_b = a > b if not _may_be_nan(b) else tirx.Or(a > b, tirx.isnan(b))
    return tirx.Select(take_b, b, a)


# ---------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------

def _broadcast_compute(x, y, f, name):
    """f(x, y) elementwise with NumPy broadcasting; x or y may be a scalar."""
    xs = list(x.shape) if isinstance(x, te.Tensor) else []
    ys = list(y.shape) if isinstance(y, te.Tensor) else []
    rank = max(len(xs), len(ys))
    xs_al = [None] * (rank - len(xs)) + xs
    ys_al = [None] * (rank - len(ys)) + ys

    def is_one(d):
        return isinstance(d, tirx.IntImm) and d.value == 1

    out = []
    for dx, dy in zip(xs_al, ys_al):
        if dx is None or (is_one(dx) and dy is not None):
            out.append(dy)
        else:
            out.append(dx)

    def at(t, shape, idx):
        if not isinstance(t, te.Tensor):
            return t
        off = rank - len(shape)
        return t(*[tirx.const(0, _dtype(idx[off + k])) if is_one(d) else idx[off + k] for k, d in enumerate(shape)])

    return te.compute(out, lambda *i: f(at(x, xs, i), at(y, ys, i)), name=name)


def _binary(f, name, fallback):
    def legalize(bb, call):
        if not _is_float(call.ty.dtype):
            return fallback(bb, call)
        a = call.args[0]
        b = _try_convert_to_scalar_const(call.args[1])
        if _is_relax_expr(b):
            a = _try_convert_to_scalar_const(a)
        return bb.call_te(lambda x, y: _broadcast_compute(x, y, f, name), a, b, primfunc_name_hint=name)
    return legalize


def _relu(bb, call):
    def f(x):
        if not _is_float(_dtype(x)):
            return topi.nn.relu(x)
        zero = tirx.const(0, _dtype(x))
        return te.compute(x.shape, lambda *i: tirx.Select(x(*i) < zero, zero, x(*i)), name="relu")
    return bb.call_te(f, call.args[0], primfunc_name_hint="relu")


# ---------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------

def _reduction_axes(axis, rank):
    if axis is None:
        return list(range(rank))
    return sorted({int(a) + rank if int(a) < 0 else int(a) for a in axis})


def _reduce(x, axes, keepdims, body, name):
    """te.compute of `body(x, reduce_index_list, reduce_axes)` over `axes`;
    `body` returns the reduction expression (or a tuple of them)."""
    rank = len(x.shape)
    raxes = [te.reduce_axis((0, x.shape[a]), name=f"k{a}") for a in axes]
    shape = [1 if a in axes else x.shape[a] for a in range(rank)] if keepdims \
        else [x.shape[a] for a in range(rank) if a not in axes]

    def fcompute(*idx):
        it, rit, full = iter(idx), iter(raxes), []
        for a in range(rank):
            if a in axes:
                full.append(next(rit).var)
                if keepdims:
                    next(it)
            else:
                full.append(next(it))
        return body(full, raxes)
    return te.compute(shape, fcompute, name=name)


def _float_extreme(dtype, sign):
    return tirx.const(sign * math.inf, dtype)


_MAX = te.comm_reducer(nan_max, lambda t: _float_extreme(t, -1), name="nan_max")
_MIN = te.comm_reducer(nan_min, lambda t: _float_extreme(t, +1), name="nan_min")


def _statistical(reducer, name, fallback):
    def legalize(bb, call):
        if not _is_float(call.ty.dtype):
            return fallback(bb, call)
        axis = None if call.attrs.axis is None else [int(a) for a in call.attrs.axis]
        keep = bool(call.attrs.keepdims)

        def f(x):
            axes = _reduction_axes(axis, len(x.shape))
            return _reduce(x, axes, keep, lambda full, r: reducer(x(*full), axis=r), name)
        return bb.call_te(f, call.args[0], primfunc_name_hint=name)
    return legalize


def _arg(extreme, name, fallback):
    """argmax/argmin as two single-output reductions: the NaN-propagating
    extreme m of each row, then the first index holding m (NaN where m is
    NaN).  So NaN wins, ties give the first index and a row of -inf gives 0.
    (A fused (index, value) tuple reduction is miscompiled once dlight
    vectorises it across rows.)"""
    def legalize(bb, call):
        if not _is_float(call.args[0].ty.dtype):
            return fallback(bb, call)
        axis = call.attrs.axis
        keep = bool(call.attrs.keepdims)

        def f(x):
            rank = len(x.shape)
            axes = _reduction_axes(None if axis is None else [int(axis)], rank)
            m = _reduce(x, axes, True, lambda full, r: extreme(x(*full), axis=r), name + "_value")
            none = tirx.const(2 ** 62, "int64")

            def body(full, raxes):
                # the row-major index over the reduced axes (all of them when axis is None)
                lin = tirx.const(0, "int64")
                for a, r in zip(axes, raxes):
                    lin = lin * tirx.Cast("int64", x.shape[a]) + tirx.Cast("int64", r.var)
                v = x(*full)
                mv = m(*[tirx.const(0, _dtype(i)) if a in axes else i for a, i in enumerate(full)])
                hit = tirx.Or(v == mv, tirx.And(tirx.isnan(v), tirx.isnan(mv)))
                return te.min(tirx.Select(hit, lin, none), axis=raxes)
            return _reduce(x, axes, keep, body, name)
        return bb.call_te(f, call.args[0], primfunc_name_hint=name)
    return legalize


# ---------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------

def max_pool(x, spatial_axes, kernel, strides, dilation, pad_before, out_shape, overhang):
    """Max pooling over `spatial_axes` of x: windows reach into padding filled
    with -inf, NaN propagates, and a window of -inf gives -inf (torch).
    `overhang`: windows may pass the end of x (padding after, ceil_mode)."""
    nd = len(spatial_axes)
    needed = [(out_shape[a] - 1) * strides[k] + (kernel[k] - 1) * dilation[k] + 1
              for k, a in enumerate(spatial_axes)]
    src = x
    if any(pad_before) or overhang:
        def padded_at(*i):
            conds, src = [], list(i)
            for k, a in enumerate(spatial_axes):
                src[a] = i[a] - pad_before[k]
                conds += [src[a] >= 0, src[a] < x.shape[a]]
            inside = tirx.all(*conds)
            return tirx.if_then_else(inside, x(*src), _float_extreme(_dtype(x), -1))
        pshape = list(x.shape)
        for k, a in enumerate(spatial_axes):
            pshape[a] = tirx.max(needed[k], x.shape[a] + pad_before[k])
        src = te.compute(pshape, padded_at, name="pad_neg_inf")
    raxes = [te.reduce_axis((0, kernel[k]), name=f"r{k}") for k in range(nd)]

    def window(*i):
        at = list(i)
        for k, a in enumerate(spatial_axes):
            at[a] = i[a] * strides[k] + raxes[k] * dilation[k]
        return _MAX(src(*at), axis=raxes)
    return te.compute(out_shape, window, name="max_pool")


def _max_pool(nd):
    fallback = f"relax.nn.max_pool{nd}d"

    def legalize(bb, call):
        a = call.attrs
        layout = str(a.layout)
        letters = "DHW"[3 - nd:]
        if (str(a.out_layout) != layout or not _is_float(call.ty.dtype)
                or any(ch.islower() or ch.isdigit() for ch in layout)):
            return _DEFAULT[fallback](bb, call)
        axes = [layout.index(ch) for ch in letters]
        out_shape = list(call.ty.shape.values)
        pad_before = [int(p) for p in a.padding[:nd]]
        overhang = bool(a.ceil_mode) or any(int(p) for p in a.padding[nd:])
        return bb.call_te(lambda x: max_pool(x, axes, [int(k) for k in a.pool_size], [int(s) for s in a.strides],
                                             [int(d) for d in a.dilation], pad_before, out_shape, overhang),
                          call.args[0], primfunc_name_hint=f"max_pool{nd}d")
    return legalize


def adaptive_max_pool2d(x, out_size):
    """torch's adaptive max pooling (NCHW): window i spans
    [floor(i*H/o), ceil((i+1)*H/o)); NaN propagates.  Symbolic H or W keep
    TOPI's kernel (its window bound needs concrete sizes here)."""
    H, W = x.shape[2], x.shape[3]
    if not (isinstance(H, tirx.IntImm) and isinstance(W, tirx.IntImm)):
        return topi.nn.adaptive_pool(x, out_size, "max", "NCHW")
    oh, ow = out_size
    kh = te.reduce_axis((0, -(-int(H) // oh) + 1), name="rh")
    kw = te.reduce_axis((0, -(-int(W) // ow) + 1), name="rw")

    def start(i, n, o):
        return tirx.floordiv(i * n, o)

    def end(i, n, o):
        return tirx.floordiv((i + 1) * n + o - 1, o)

    def window(n, c, i, j):
        h, w = start(i, H, oh) + kh, start(j, W, ow) + kw
        inside = tirx.all(h < end(i, H, oh), w < end(j, W, ow))
        # a clamped (always valid) read masked by a select: with a reduction
        # predicate (`where=`) instead, the scheduled kernel read past the window
        v = x[n, c, tirx.min(h, H - 1), tirx.min(w, W - 1)]
        return _MAX(tirx.Select(inside, v, _float_extreme(_dtype(x), -1)), axis=[kh, kw])
    return te.compute((x.shape[0], x.shape[1], oh, ow), window, name="adaptive_max_pool")


# ---------------------------------------------------------------------------

def _default(name):
    from tvm.ir import Op
    return Op.get(name).get_attr("FLegalize")


_DEFAULT: dict = {}


def legalize_map() -> dict:
    """The customize_legalize_map for `relax.transform.LegalizeOps`."""
    if not _DEFAULT:
        for n in ("relax.maximum", "relax.minimum", "relax.nn.relu", "relax.max", "relax.min", "relax.argmax",
                  "relax.argmin", "relax.nn.max_pool1d", "relax.nn.max_pool2d", "relax.nn.max_pool3d"):
            _DEFAULT[n] = _default(n)
    return {
        "relax.maximum": _binary(nan_max, "maximum", _DEFAULT["relax.maximum"]),
        "relax.minimum": _binary(nan_min, "minimum", _DEFAULT["relax.minimum"]),
        "relax.nn.relu": _relu,
        "relax.max": _statistical(_MAX, "max", _DEFAULT["relax.max"]),
        "relax.min": _statistical(_MIN, "min", _DEFAULT["relax.min"]),
        "relax.argmax": _arg(_MAX, "argmax", _DEFAULT["relax.argmax"]),
        "relax.argmin": _arg(_MIN, "argmin", _DEFAULT["relax.argmin"]),
        "relax.nn.max_pool1d": _max_pool(1),
        "relax.nn.max_pool2d": _max_pool(2),
        "relax.nn.max_pool3d": _max_pool(3),
    }
