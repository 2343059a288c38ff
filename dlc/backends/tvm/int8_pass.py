"""`Int8Kernels(target)`: the Relax pass that gives qconv2d / qdense their
target's int8 kernel.

`int8_lowering` emits every qconv2d / qdense as a ``call_tir`` to its direct
form, tagged ``dlc.int8``.  This pass rewrites each tagged call into

1. weight-only preparation, ordinary ``call_tir``s on the weight and bias
   (`LiftTransformParams`, which runs after this pass, moves them into
   ``main_transform_params``: they run once, when the weights are bound):
   the packed weight ``wp[O / L, KH, KW, C4 / 4, L, 4]`` and the zero-point
   bias ``bias_q - zp * sum(w)``;
2. the packed kernel, already scheduled (`int8_schedule`: tensorized with
   `vpdpbusd` / `sdot` on CPUs, `dp4a` on CUDA) and marked opaque so that
   FuseOps leaves it alone;
3. a reshape (a view) back to NCHW / [..., N], and a slice where the
   channel count is not a multiple of L.

Grouped and depthwise convolutions get the NHWC channel-vectorized kernel on
CPUs, and keep their direct form (dlight's GPU rules) on CUDA.
"""
from __future__ import annotations

import json

import tvm
from tvm import relax
from tvm.ir.module import IRModule
from tvm.relax import PyExprMutator, expr_functor

from . import int8_compute as K
from . import int8_schedule as S
from .int8_lowering import INT8_ATTR
from .int8_lowering import OPAQUE as _OPAQUE


def _dims(sinfo) -> list:
    return list(sinfo.shape)


def _static_int(d) -> int:
    return int(d.value) if hasattr(d, "value") else int(d)


@expr_functor.mutator
class _Rewriter(PyExprMutator):
    def __init__(self, mod: IRModule, target):
        super().__init__(mod)
        self.mod_ = mod
        self.target = target
        self.cuda = target.kind.name == "cuda"
        self.lanes = S.lanes_for(target)
        self.signed = (not self.cuda) and "sdot" in S.cpu_features(target)
        self.count = 0

    def visit_call_(self, call):
        if getattr(call.op, "name", "") == "relax.call_tir":
            func = self.mod_[call.args[0]]
            if func.attrs is not None and INT8_ATTR in func.attrs:
                info = json.loads(str(func.attrs[INT8_ATTR]))
                args = [self.visit_expr(a) for a in call.args[1].fields]
                new = self._rewrite(info, args)
                if new is not None:
                    self.count += 1
                    return new
        return super().visit_call_(call)

    # -- helpers ----------------------------------------------------------
    def _kernel(self, fn, args, kw, name: str, schedule, emit: bool = True):
        """A call of a TE kernel, scheduled now and marked opaque; emitted unless
        `emit` is false (the last expression of a rewrite is returned as a call:
        the mutator binds it to the original variable, which may be an output)."""
        bb = self.builder_
        call = bb.call_te(fn, *args, **kw, primfunc_name_hint=name)
        gv = call.args[0]
        func = schedule(bb.get()[gv])
        bb.update_func(gv, func.with_attr("op_pattern", _OPAQUE))
        return bb.emit(call) if emit else call

    def _schedule(self, func):
        return S.schedule_cuda(func) if self.cuda else S.schedule_packed(func, self.target)

    def _prepare(self, w, bias, x_zp: int, in_dtype: str):
        bb = self.builder_
        wp = bb.emit_te(K.pack_weight, w, self.lanes, primfunc_name_hint="int8_pack_weight")
        offset = K.act_offset(in_dtype, self.signed)
        be = bb.emit_te(K.effective_bias, bias, w, x_zp, offset, primfunc_name_hint="int8_bias")
        return wp, be

    def _rewrite(self, info: dict, args):
        if info["kind"] == "qdense":
            return self._dense(info, args)
        if info["groups"] != 1:
            return None if self.cuda else self._grouped(info, args)
        return self._conv(info, args)

    # -- the ops ------------------------------------------------------------
    def _conv(self, info, args):
        x, w, bias, mult, shift = args
        co = _static_int(_dims(w.ty)[0])
        wp, be = self._prepare(w, bias, info["x_zp"], x.ty.dtype)
        kw = {k: info[k] for k in ("x_zp", "y_zp", "out_dtype", "relu")}
        y5 = self._kernel(K.qconv2d_packed, [x, wp, be, mult, shift],
                          dict(kw, pads=info["pads"], stride=info["stride"], dilation=info["dilation"],
                               n_out=co, signed_act=self.signed), "qconv2d_int8", self._schedule)
        n, ob, lanes, oh, ow = _dims(y5.ty)
        y = relax.op.reshape(y5, [n, ob * lanes, oh, ow])
        if _static_int(ob) * _static_int(lanes) != co:
            y = relax.op.strided_slice(self.builder_.emit(y), axes=[1], begin=[0], end=[co])
        return y

    def _dense(self, info, args):
        x, w, bias, mult, shift = args
        bb = self.builder_
        xs = _dims(x.ty)
        nout, k = (_static_int(d) for d in _dims(w.ty))
        rows = 1
        for d in xs[:-1]:
            rows = rows * d
        x2 = bb.emit(relax.op.reshape(x, [rows, k]))
        wp, be = self._prepare(w, bias, info["x_zp"], x.ty.dtype)
        kw = {k_: info[k_] for k_ in ("x_zp", "y_zp", "out_dtype", "relu")}
        y5 = self._kernel(K.qdense_packed, [x2, wp, be, mult, shift],
                          dict(kw, n_out=nout, signed_act=self.signed), "qdense_int8", self._schedule)
        _one, _one2, m, ob, lanes = _dims(y5.ty)
        y = bb.emit(relax.op.reshape(y5, [m, ob * lanes]))
        if _static_int(ob) * _static_int(lanes) != nout:
            y = bb.emit(relax.op.strided_slice(y, axes=[1], begin=[0], end=[nout]))
        return relax.op.reshape(y, [*xs[:-1], nout])

    def _grouped(self, info, args):
        x, w, bias, mult, shift = args
        bb = self.builder_
        wt = bb.emit_te(K.grouped_weight, w, primfunc_name_hint="int8_weight_hwio")
        offset = K.act_offset(x.ty.dtype, False)
        be = bb.emit_te(K.effective_bias, bias, w, info["x_zp"], offset, primfunc_name_hint="int8_bias")
        kw = {k: info[k] for k in ("x_zp", "y_zp", "out_dtype", "relu", "groups", "pads", "stride",
                                   "dilation")}
        return self._kernel(K.grouped_conv, [x, wt, be, mult, shift], kw, "qconv2d_grouped_int8",
                            lambda f: S.schedule_grouped(f, self.target), emit=False)


@tvm.transform.module_pass(opt_level=0, name="DlcInt8Kernels")
class Int8Kernels:  # pylint: disable=too-few-public-methods
    """Replace the direct qconv2d / qdense kernels by the target's int8 kernels."""

    def __init__(self, target):
        self.target = target

    def transform_module(self, mod: IRModule, _ctx) -> IRModule:
        if not any(isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None and INT8_ATTR in f.attrs
                   for _gv, f in mod.functions_items()):
            return mod
        rw = _Rewriter(mod, self.target)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rw.builder_.update_func(gv, rw.visit_expr(func))
        out = rw.builder_.get()
        return relax.transform.DeadCodeElimination()(out)
