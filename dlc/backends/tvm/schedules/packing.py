"""Weight pre-packing for the CPU schedules (a Relax pass).

A register tile of `TiledContraction` reads a panel of the weights: every
reduction step loads `ct` contiguous output channels.  In HWIO / [K, N]
layout consecutive steps are `O * 4` bytes apart, so for wide layers
(O >= 128) the panel's cache lines fall into a few cache sets and thrash L1
and L2.  `PackWeights` rewrites, in ``main``,

- ``nn.conv2d`` (NHWC / HWIO, groups == 1) whose weight comes from the
  weights alone into a TE convolution reading ``w_packed[O // ct, KH, KW, I, ct]``;
- ``matmul(x, B)`` with a 2-D weight-derived ``B[K, N]`` into a TE matmul
  reading ``B_packed[N // ct, K, ct]``,

where the packing (reshape + permute_dims of the weight) is an ordinary
Relax op, so `LiftTransformParams` moves it into ``main_transform_params``:
it runs once, at load.  Only weight-derived operands (parameters after
``num_input``, and values computed from them alone) are packed.
"""
from __future__ import annotations

import tvm
from tvm import relax, te, topi
from tvm.ir.module import IRModule
from tvm.relax import PyExprMutator, expr_functor

from .cpu import col_tile, row_tile, vector_lanes


def _static(shape):
    out = []
    for d in shape:
        if isinstance(d, int):
            out.append(d)
        elif isinstance(d, tvm.tirx.IntImm):
            out.append(int(d.value))
        else:
            return None
    return out


def _dt(v) -> str:
    d = v.ty.dtype
    return str(getattr(d, "dtype", d))


def _weight_vars(func: relax.Function) -> set:
    """Vars of `func` whose value depends on weight parameters only."""
    num_input = None
    if func.attrs is not None and "num_input" in func.attrs:
        num_input = int(func.attrs["num_input"])
    if num_input is None:
        return set()
    weights = set(func.params[num_input:])
    body = func.body
    if not isinstance(body, relax.SeqExpr):
        return weights
    for block in body.blocks:
        for binding in block.bindings:
            if not isinstance(binding, relax.VarBinding):
                continue
            fv = relax.analysis.free_vars(binding.value)
            if fv and all(v in weights for v in fv):
                weights.add(binding.var)
    return weights


def conv2d_nhwc_packed(x, wp, strides, padding, dilation, out_dtype):
    """NHWC convolution with weights packed as [O // ct, KH, KW, I, ct]."""
    n, h, w, _c = x.shape
    ob, kh, kw, ci, ct = wp.shape
    sh, sw = strides
    dh, dw = dilation
    pt, pl, pb, pr = padding
    if any(int(p) for p in padding):
        data = topi.nn.pad(x, [0, pt, pl, 0], [0, pb, pr, 0], name="pad_temp")
    else:
        data = x
    ho = (h + pt + pb - ((kh - 1) * dh + 1)) // sh + 1
    wo = (w + pl + pr - ((kw - 1) * dw + 1)) // sw + 1
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    rc = te.reduce_axis((0, ci), name="rc")

    def body(nn, yy, xx, ff):
        a = data[nn, yy * sh + ry * dh, xx * sw + rx * dw, rc]
        b = wp[ff // ct, ry, rx, rc, ff % ct]
        if out_dtype != x.dtype:
            a, b = a.astype(out_dtype), b.astype(out_dtype)
        return te.sum(a * b, axis=[ry, rx, rc])

    return te.compute((n, ho, wo, ob * ct), body, name="conv2d_nhwc")


def _pad_rows(rows, row_tile: int) -> bool:
    """Pad a symbolic row extent always; a static one when no divisor close to
    `row_tile` exists and padding wastes little (32 rows -> 35 for 7-row tiles)."""
    if not isinstance(rows, (int, tvm.tirx.IntImm)):
        return True
    n = int(rows)
    if n <= row_tile or n % row_tile == 0:
        return False
    best = max(d for d in range(1, row_tile + 1) if n % d == 0)
    waste = (-n % row_tile) / n
    return best < row_tile - 2 and waste <= 0.15


def matmul_packed(x, bp, out_dtype, row_tile: int = 1):
    """x[..., K] @ B, with B packed as [N // ct, K, ct].

    When the row extent (x's second-to-last dimension) is symbolic, or static
    without a divisor close to `row_tile`, the rows are padded up to a
    multiple of `row_tile` (a zero-filled copy of x, the product over the
    padded rows, then a crop that the schedule fuses into the epilogue), so
    that the register tile is full and needs no bounds check.
    """
    nb, kk, ct = bp.shape
    k = te.reduce_axis((0, kk), name="k")
    batch = list(x.shape[:-1])
    rows = batch[-1] if batch else None
    pad = row_tile > 1 and rows is not None and _pad_rows(rows, row_tile)
    data = x
    if pad:
        prow = (rows + (row_tile - 1)) // row_tile * row_tile
        data = te.compute(
            (*batch[:-1], prow, kk),
            lambda *i: tvm.tirx.if_then_else(i[-2] < rows, x[i], tvm.tirx.const(0, x.dtype)),
            name="pad_rows")
        batch = batch[:-1] + [prow]

    def body(*idx):
        a = data[(*idx[:-1], k)]
        j = idx[-1]
        b = bp[j // ct, k, j % ct]
        if out_dtype != x.dtype:
            a, b = a.astype(out_dtype), b.astype(out_dtype)
        return te.sum(a * b, axis=[k])

    out = te.compute((*batch, nb * ct), body, name="matmul")
    if not pad:
        return out
    return te.compute((*x.shape[:-1], nb * ct), lambda *i: out[i], name="crop_rows")


@expr_functor.mutator
class _Packer(PyExprMutator):
    def __init__(self, mod, lanes: int):
        super().__init__(mod)
        self.lanes = lanes
        self.weights: set = set()

    def _is_weight(self, e) -> bool:
        return isinstance(e, relax.Var) and e in self.weights

    def visit_call_(self, call):  # pylint: disable=too-many-return-statements
        op = getattr(call.op, "name", None)
        try:
            if op == "relax.nn.conv2d":
                new = self._conv(call)
                if new is not None:
                    return new
            elif op == "relax.matmul":
                new = self._matmul(call)
                if new is not None:
                    return new
        except Exception:  # noqa: BLE001, S110 - TVM raises many types
            pass
        return super().visit_call_(call)

    def _conv(self, call):
        a = call.attrs
        if (a.data_layout != "NHWC" or a.kernel_layout != "HWIO" or int(a.groups) != 1
                or a.out_layout != "NHWC"):
            return None
        x, w = call.args
        if not self._is_weight(w):
            return None
        ws = _static(w.ty.shape)
        if ws is None or len(ws) != 4:
            return None
        dtype = _dt(w)
        if not str(dtype).startswith("float"):
            return None
        kh, kw, ci, o = ws
        ct = col_tile(o, self.lanes)
        if ct >= o or o % ct:
            return None
        out_dtype = a.out_dtype if a.out_dtype else _dt(x)
        if str(out_dtype) in ("", "void"):
            out_dtype = _dt(x)
        nw = self.visit_expr(w)
        nx = self.visit_expr(x)
        wp = self.builder_.emit(relax.op.permute_dims(
            relax.op.reshape(nw, (kh, kw, ci, o // ct, ct)), [3, 0, 1, 2, 4]))
        return self.builder_.call_te(
            conv2d_nhwc_packed, nx, wp,
            [int(s) for s in a.strides], [int(p) for p in a.padding],
            [int(d) for d in a.dilation], str(out_dtype),
            primfunc_name_hint="conv2d")

    def _matmul(self, call):
        x, b = call.args
        if not self._is_weight(b):
            return None
        bs = _static(b.ty.shape)
        if bs is None or len(bs) != 2 or x.ty.ndim < 1:
            return None
        if not _dt(b).startswith("float"):
            return None
        kk, n = bs
        ct = col_tile(n, self.lanes)
        if ct >= n or n % ct:
            return None
        out_dtype = call.attrs.out_dtype
        if str(out_dtype) in ("", "void", "None") or out_dtype is None:
            out_dtype = _dt(x)
        nb = self.visit_expr(b)
        nx = self.visit_expr(x)
        if x.ty.ndim == 1:
            return None
        bp = self.builder_.emit(relax.op.permute_dims(
            relax.op.reshape(nb, (kk, n // ct, ct)), [1, 0, 2]))
        return self.builder_.call_te(matmul_packed, nx, bp, str(out_dtype),
                                     row_tile(ct, self.lanes), primfunc_name_hint="matmul")


@tvm.transform.module_pass(opt_level=0, name="PackWeights")
class PackWeights:  # pylint: disable=too-few-public-methods
    """Pack conv2d / matmul weights into column panels (see module doc)."""

    def __init__(self, target):
        self.lanes = vector_lanes(target)

    def transform_module(self, mod: IRModule, _ctx) -> IRModule:
        packer = _Packer(mod, self.lanes)
        changed = False
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function) and func.attrs is not None \
                    and "num_input" in func.attrs:
                packer.weights = _weight_vars(func)
                if not packer.weights:
                    continue
                new = packer.visit_expr(func)
                packer.builder_.update_func(gv, new)
                changed = True
        if not changed:
            return mod
        return packer.builder_.get()
