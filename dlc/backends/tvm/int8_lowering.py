"""TVM lowering of dlc's quantized ops (`compiler/ops/quant.py`).

`quantize_linear`, `dequantize_linear` and `requant_multiplier` become TE
kernels (`int8_compute`), elementwise, scheduled like any other.

`qconv2d` and `qdense` are emitted in their direct form (the pinned formula,
NCHW / OIHW, correct on any target) as a ``call_tir`` whose PrimFunc carries
the attribute ``dlc.int8`` (the op's attributes as JSON).  The pipeline's
`int8_pass.Int8Kernels` then replaces each such call, for the target at hand,
by the packed kernel with the dot-product instruction (`vpdpbusd`, `sdot`,
`dp4a`) and its weight-only preparation (packing, zero-point bias), which
`LiftTransformParams` moves to load time.
"""
from __future__ import annotations

import json

from ...compiler.ops.conv import ntuple
from . import int8_compute as K
from .lowering import lowers, out_dtype

INT8_ATTR = "dlc.int8"
OPAQUE = 8   # relax's OpPatternKind.kOpaque: FuseOps fuses nothing with the kernel


def _q_params(node) -> dict:
    a = node.attrs
    return {"x_zp": int(a["x_zero_point"]), "y_zp": int(a["y_zero_point"]),
            "out_dtype": out_dtype(node), "relu": bool(a["relu"])}


def _tag(low, var, info: dict):
    """Mark the PrimFunc that `var`'s call_tir calls with ``dlc.int8`` = `info`."""
    call = low.bb.lookup_binding(var)
    gv = call.args[0]
    func = low.bb.get()[gv]
    low.bb.update_func(gv, func.with_attr(INT8_ATTR, json.dumps(info, sort_keys=True)))
    return var


@lowers("qconv2d")
def _qconv2d(low, node, args, env):
    a = node.attrs
    ph, pw = ntuple(a["padding"], 2, "padding")
    info = {"kind": "qconv2d", "pads": [ph, pw, ph, pw], "stride": list(ntuple(a["stride"], 2, "stride")),
            "dilation": list(ntuple(a["dilation"], 2, "dilation")), "groups": int(a["groups"]),
            **_q_params(node)}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in info.items() if k != "kind"}
    y = low.bb.emit_te(K.direct_qconv2d, *args[:5], **kw, primfunc_name_hint="qconv2d")
    return _tag(low, y, info)


@lowers("qdense")
def _qdense(low, node, args, env):
    info = {"kind": "qdense", **_q_params(node)}
    kw = {k: v for k, v in info.items() if k != "kind"}
    y = low.bb.emit_te(K.direct_qdense, *args[:5], **kw, primfunc_name_hint="qdense")
    return _tag(low, y, info)


def _axis(node, rank: int):
    axis = node.attrs.get("axis")
    if axis is None:
        return 0
    return int(axis) + rank if int(axis) < 0 else int(axis)


@lowers("quantize_linear")
def _quantize(low, node, args, env):
    rank = len(node.inputs[0].type.shape)
    x = args[0]
    return low.bb.emit_te(K.quantize_linear, x, args[1], args[2] if len(args) > 2 else None,
                          axis=_axis(node, rank), dtype=out_dtype(node),
                          primfunc_name_hint="quantize_linear")


@lowers("dequantize_linear")
def _dequantize(low, node, args, env):
    """A kernel of its own (opaque to FuseOps): fused with a following add (a
    residual connection), LLVM would contract ``(q - zp) * scale + y`` into one
    FMA (TVM compiles with fp-contract=fast), which rounds once where the
    reference rounds twice, and the next quantize_linear could then round a
    value to the other integer."""
    rank = len(node.inputs[0].type.shape)
    y = low.bb.emit_te(K.dequantize_linear, args[0], args[1], args[2] if len(args) > 2 else None,
                       axis=_axis(node, rank), primfunc_name_hint="dequantize_linear")
    gv = low.bb.lookup_binding(y).args[0]
    low.bb.update_func(gv, low.bb.get()[gv].with_attr("op_pattern", OPAQUE))
    return y


@lowers("requant_multiplier")
def _requant_multiplier(low, node, args, env):
    shape = low.shape(node.outputs[0].type.shape)
    res = low.bb.emit_te(K.requant_multiplier, *args[:3], shape, primfunc_name_hint="requant_multiplier")
    rx = low.relax
    return [low.emit(rx.TupleGetItem(res, 0)), low.emit(rx.TupleGetItem(res, 1))]
