"""Lower the QDQ patterns the quantize pass made into integer ops.

    dequantize(x_q; s_x, zp_x) ─┐
    dequantize(w_q; s_w)       ─┼─ conv2d / linear (+ bias) [─ relu] ─ quantize(s_y, zp_y)
                          bias ─┘
      =>  qconv2d / qdense(x_q, w_q, bias_q, multiplier, shift; x_zero_point=zp_x, y_zero_point=zp_y,
                           relu=...)
    with  bias_q = quantize_linear(bias, s_x * s_w, int32)     (round half to even; zeros without a bias)
          multiplier, shift = requant_multiplier(s_x, s_w, s_y)

bias_q, multiplier and shift depend on the weights and the constant scales
alone: they are weight-only nodes (compiler/hoist.py), which the NumPy
interpreter and TVM's transform_params compute once per set of weights, as
they do the int8 weight itself (quantize_linear of the float weight).

Then a quantize fed by a dequantize with the same (per-tensor) parameters
is the identity on the quantized values: consecutive int8 layers pass their
uint8 tensors straight on.  What nothing reads any more (the float layers,
their dequantized weights) is removed.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Value
from ..quant.sites import symmetric_padding
from ..types import DType
from ._folding import Splice
from .dce import dce_graph
from .pipeline import PassContext, register_pass
from .rewrite import escaping, replace_uses, users

_LAYERS = {"conv2d": "qconv2d", "linear": "qdense"}


def const_scalar(v: Value | None):
    """The value of a scalar `full` constant (as its dtype's NumPy scalar), else None."""
    if v is None or v.producer is None or v.producer.op.name != "full" or v.type.shape != ():
        return None
    a = v.producer.attrs
    return np.dtype(DType.parse(a["dtype"]).numpy_name).type(a["value"])


class _Match:
    def __init__(self, layer, dq_x, dq_w, relu, q_out):
        self.layer, self.dq_x, self.dq_w, self.relu, self.q_out = layer, dq_x, dq_w, relu, q_out


def _producer(v: Value, op: str) -> Node | None:
    p = v.producer
    return p if p is not None and p.op.name == op else None


def _per_tensor_u8(n: Node, q_type) -> bool:
    """A per-tensor uint8 (de)quantize with a constant zero point."""
    return (n.attrs["axis"] is None and q_type.dtype == DType.u8 and len(n.inputs) > 2
            and const_scalar(n.inputs[2]) is not None)


def _match(g: Graph, n: Node, uses, out_of_graph) -> _Match | None:
    dq_x = _producer(n.inputs[0], "dequantize_linear")
    dq_w = _producer(n.inputs[1], "dequantize_linear")
    if dq_x is None or dq_w is None or not _per_tensor_u8(dq_x, dq_x.inputs[0].type):
        return None
    if dq_w.inputs[0].type.dtype != DType.i8 or (len(dq_w.inputs) > 2 and dq_w.inputs[2] is not None):
        return None
    if n.op.name == "conv2d" and symmetric_padding(n) is None:
        return None
    y, relu = n.outputs[0], None
    readers = uses.get(y.id, [])
    if len(readers) == 1 and readers[0].op.name == "relu" and y.id not in out_of_graph:
        relu = readers[0]
        y = relu.outputs[0]
        readers = uses.get(y.id, [])
    if len(readers) != 1 or y.id in out_of_graph or readers[0].op.name != "quantize_linear":
        return None
    q = readers[0]
    if q.inputs[0] is not y or not _per_tensor_u8(q, q.outputs[0].type):
        return None
    return _Match(n, dq_x, dq_w, relu, q)


@register_pass("lower_int8", level=1, modes=("eval",), when=lambda opts: opts.quant is not None, requires=("quantize",),
               summary="rewrite dequantize -> conv2d/dense [-> relu] -> quantize into qconv2d/qdense")
def lower_int8(g: Graph, ctx: PassContext) -> None:
    for n in [n for n in g.nodes if n.op.name in _LAYERS]:
        ctx.node = n
        m = _match(g, n, users(g), escaping(g))
        if m is None:
            continue
        _lower(g, m)
        ctx.count(_LAYERS[n.op.name])
    ctx.node = None
    ctx.count("requantize_pairs_removed", drop_requantize_pairs(g))
    dce_graph(g)


def _lower(g: Graph, m: _Match) -> None:
    n = m.layer
    x_q, s_x, zp_x = m.dq_x.inputs[0], m.dq_x.inputs[1], m.dq_x.inputs[2]
    w_q, s_w = m.dq_w.inputs[0], m.dq_w.inputs[1]
    s_y, zp_y = m.q_out.inputs[1], m.q_out.inputs[2]
    bias = n.inputs[2] if len(n.inputs) > 2 else None
    co = w_q.type.shape[0]
    with Splice(g, m.q_out, n.span, n.scope) as b:
        if s_w.type.rank == 0:               # a per-tensor weight scale, one per output channel
            s_w = b.op("mul", s_w, b.const(1.0, shape=(co,)))
        if bias is not None:
            bias_q = b.op("quantize_linear", bias, b.op("mul", s_x, s_w), None, axis=0, dtype="int32")
        else:
            bias_q = b.op("full", shape=(co,), value=0, dtype="int32")
        mult, shift = b.op("requant_multiplier", s_x, s_w, s_y)
        q = dict(x_zero_point=int(const_scalar(zp_x)), y_zero_point=int(const_scalar(zp_y)), out_dtype="uint8",
                 relu=m.relu is not None)
        if n.op.name == "conv2d":
            a = n.attrs
            y = b.op("qconv2d", x_q, w_q, bias_q, mult, shift, stride=a["stride"], padding=symmetric_padding(n),
                     dilation=a["dilation"], groups=a["groups"], **q)
        else:
            y = b.op("qdense", x_q, w_q, bias_q, mult, shift, **q)
    replace_uses(g, {m.q_out.outputs[0].id: y})
    for dead in (m.q_out, m.relu, n):
        if dead is not None:
            g.nodes.remove(dead)


def _same_const(a: Value, b: Value) -> bool:
    if a is b:
        return True
    va, vb = const_scalar(a), const_scalar(b)
    return va is not None and vb is not None and va.dtype == vb.dtype and va == vb


def drop_requantize_pairs(g: Graph) -> int:
    """quantize(dequantize(q; s, zp); s, zp) -> q for equal per-tensor parameters; returns how many."""
    mapping = {}
    for qn in g.nodes:
        if qn.op.name != "quantize_linear" or qn.attrs["axis"] is not None:
            continue
        dq = _producer(qn.inputs[0], "dequantize_linear")
        if dq is None or dq.attrs["axis"] is not None or dq.inputs[0].type != qn.outputs[0].type:
            continue
        zq, zd = (qn.inputs[2] if len(qn.inputs) > 2 else None), (dq.inputs[2] if len(dq.inputs) > 2 else None)
        if _same_const(qn.inputs[1], dq.inputs[1]) and (zq is zd or (zq is not None and zd is not None
                                                                     and _same_const(zq, zd))):
            mapping[qn.outputs[0].id] = dq.inputs[0]
    replace_uses(g, mapping)
    return len(mapping)
