"""QDQ models at import: onnxruntime's QDQ pattern becomes dlc's int8 ops.

    DequantizeLinear(x_q uint8|int8, s_x, zp_x)             ─┐
    DequantizeLinear(w_q int8, s_w per channel|tensor, 0)   ─┼─ Conv | Gemm | MatMul [+ bias] [─ Relu]
    bias: float, or DequantizeLinear(b int32, s_x*s_w, 0)   ─┘        ─ QuantizeLinear(s_y, zp_y)
      =>  qconv2d / qdense(x_q, w_q, bias_q, multiplier, shift;
                           x_zero_point=zp_x, y_zero_point=zp_y, out_dtype, relu)

the pattern onnxruntime fuses into QLinearConv / QGemm, and the one `dlc export`
writes for a quantized artifact.  Everything the int8 op needs besides x_q is
known at import (initializers): bias_q, multiplier and shift are computed here
with the pinned arithmetic (compiler/quant/scales.py) and become int32 buffers:

    bias_q = the int32 initializer itself when its scale is s_x * s_w (float32 product) and its
             zero point 0 (quantize_static writes it so), else round_half_even(bias / (s_x * s_w))
    multiplier, shift = fixed point of s_x * s_w / s_y (frexp; shift in [1, 62])

A layer that does not fit (a weight zero point other than 0, scales computed at
run time, asymmetric conv padding, a float output read by other nodes, a
multiplier no shift in [1, 62] represents) stays as imported: float math between
the dequantize and quantize ops, which computes what onnxruntime's reference
(ONNX's own QDQ semantics) computes.  The rest of the model (pooling, reshapes,
adds between the Q/DQ pairs) stays fake-quant too.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from ...compiler.ir import Graph, Init, Node, ParamInfo, Value
from ...compiler.ops import OPS
from ...compiler.passes.dce import dce_graph
from ...compiler.passes.rewrite import escaping, replace_uses, users
from ...compiler.quant.scales import fixed_point_multipliers, real_multiplier
from ...compiler.quant.sites import symmetric_padding
from ...compiler.types import DType, TensorType
from ...errors import ShapeError

_ACT = (DType.u8, DType.i8)
_I32 = (-(1 << 31), (1 << 31) - 1)
_INT8_OP = {"conv2d": "qconv2d", "linear": "qdense", "matmul": "qdense"}


@dataclass
class _Site:
    """One matched layer: what the int8 op is built from."""

    layer: Node
    x_q: Value
    zp_x: int
    s_x: np.ndarray
    w_q: np.ndarray          # int8 [Co, ...] as the int8 op takes it
    w_value: Value | None    # the weight's existing parameter when w_q is it unchanged
    s_w: np.ndarray          # f32 [Co]
    bias: Value | None       # the bias operand (float, or a dequantize of int32), if any
    absorbed: list[Node]     # the bias add and relu folded into the op
    relu: bool
    q: Node
    s_y: np.ndarray
    zp_y: int


class _Known:
    """The import-time value of an IR value: a weight, a `full` constant, a reshape of one."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.weights = weights

    def __call__(self, v: Value | None) -> np.ndarray | None:
        if v is None:
            return None
        if v.kind in ("param", "buffer"):
            return self.weights.get(v.name)
        p = v.producer
        if p is None:
            return None
        if p.op.name == "full" and all(isinstance(d, int) for d in v.type.shape):
            return np.full(v.type.shape, p.attrs["value"], dtype=v.type.dtype.numpy_name)
        if p.op.name == "reshape":
            a = self(p.inputs[0])
            return None if a is None else a.reshape(v.type.shape)
        return None

    def scalar(self, v: Value | None, default=None):
        a = self(v)
        return default if v is None else (a if a is not None and a.ndim == 0 else None)


def _producer(v: Value | None, op: str) -> Node | None:
    p = v.producer if v is not None else None
    return p if p is not None and p.op.name == op else None


def _only_reader(v: Value, uses, out) -> Node | None:
    readers = uses.get(v.id, [])
    return readers[0] if len(readers) == 1 and v.id not in out else None


def _activation(dq: Node | None, known: _Known):
    """(x_q, s_x, zp_x) of a per-tensor uint8/int8 dequantize with known parameters, or None."""
    if dq is None or dq.attrs["axis"] is not None or dq.inputs[0].type.dtype not in _ACT:
        return None
    s = known.scalar(dq.inputs[1])
    zp = known.scalar(dq.inputs[2] if len(dq.inputs) > 2 else None, np.zeros((), np.int64))
    if s is None or zp is None:
        return None
    return dq.inputs[0], s.astype(np.float32), int(zp)


def _weight(layer: Node, dq: Node | None, known: _Known):
    """(w_q [Co, ...] int8, the parameter if unchanged, s_w f32 [Co]) of a symmetric int8 weight."""
    if dq is None or dq.inputs[0].type.dtype != DType.i8:
        return None
    w, s = known(dq.inputs[0]), known(dq.inputs[1])
    zp = known(dq.inputs[2]) if len(dq.inputs) > 2 and dq.inputs[2] is not None else np.zeros(())
    if w is None or s is None or zp is None or np.any(zp != 0):
        return None
    axis = dq.attrs["axis"]
    if layer.op.name == "matmul":            # x @ W[K, N]: qdense takes W.T [N, K], channels on ONNX axis 1
        if w.ndim != 2 or (s.ndim == 1 and axis != 1):
            return None
        w, param = np.ascontiguousarray(w.T), None
    else:
        if s.ndim == 1 and axis != 0:
            return None
        param = dq.inputs[0]
    s = np.broadcast_to(s.astype(np.float32), (w.shape[0],)).copy()
    return w, param, s


def _bias_q(site: _Site, known: _Known) -> np.ndarray | None:
    """The int32 bias at scale s_x * s_w (zeros without a bias), or None when it is not known."""
    co = site.w_q.shape[0]
    if site.bias is None:
        return np.zeros(co, np.int32)
    sxw = np.multiply(site.s_x, site.s_w, dtype=np.float32)
    dq = _producer(site.bias, "dequantize_linear")
    if dq is not None and dq.inputs[0].type.dtype == DType.i32:
        b, s = known(dq.inputs[0]), known(dq.inputs[1])
        zp = known(dq.inputs[2]) if len(dq.inputs) > 2 and dq.inputs[2] is not None else np.zeros(())
        if b is None or s is None or zp is None or b.shape != (co,):
            return None
        if np.all(zp == 0) and np.array_equal(np.broadcast_to(s, (co,)), sxw):
            return b.astype(np.int32)       # already at scale s_x * s_w: onnxruntime's QLinearConv bias
        b = np.multiply((b.astype(np.int64) - zp).astype(np.float32), s, dtype=np.float32)
    else:
        b = known(site.bias)
        if b is None or b.shape != (co,) or b.dtype.kind != "f":
            return None
    q = np.rint(np.true_divide(b.astype(np.float32), sxw, dtype=np.float32)).astype(np.float64)
    return np.clip(q, *_I32).astype(np.int32)


def _output(site_layer: Node, uses, out) -> tuple[Value | None, list[Node], Node | None]:
    """Follow the layer's float output through an optional bias add (matmul) and relu to its
    one quantize: (the bias operand, the nodes absorbed, the quantize) or (None, [], None)."""
    y, absorbed, bias = site_layer.outputs[0], [], None
    nxt = _only_reader(y, uses, out)
    if site_layer.op.name == "matmul" and nxt is not None and nxt.op.name == "add":
        other = nxt.inputs[1] if nxt.inputs[0] is y else nxt.inputs[0]
        if other.type.rank == 1 and nxt.outputs[0].type == y.type:
            bias, y = other, nxt.outputs[0]
            absorbed.append(nxt)
            nxt = _only_reader(y, uses, out)
    if nxt is not None and nxt.op.name == "relu":
        absorbed.append(nxt)
        nxt = _only_reader(nxt.outputs[0], uses, out)
    if nxt is None or nxt.op.name != "quantize_linear" or nxt.attrs["axis"] is not None:
        return None, [], None
    return bias, absorbed, nxt


def _match(n: Node, uses, out, known: _Known) -> _Site | None:
    if n.op.name == "conv2d" and symmetric_padding(n) is None:
        return None
    if n.op.name == "matmul" and (n.inputs[0].type.rank < 1 or n.inputs[1].type.rank != 2):
        return None
    act = _activation(_producer(n.inputs[0], "dequantize_linear"), known)
    wt = _weight(n, _producer(n.inputs[1], "dequantize_linear"), known)
    if act is None or wt is None:
        return None
    bias, absorbed, q = _output(n, uses, out)
    if q is None or q.outputs[0].type.dtype not in _ACT:
        return None
    if n.op.name != "matmul" and len(n.inputs) > 2 and n.inputs[2] is not None:
        bias = n.inputs[2]
    s_y = known.scalar(q.inputs[1])
    zp_y = known.scalar(q.inputs[2] if len(q.inputs) > 2 else None, np.zeros((), np.int64))
    if s_y is None or zp_y is None:
        return None
    return _Site(n, act[0], act[2], act[1], wt[0], wt[1], wt[2], bias, absorbed,
                 any(a.op.name == "relu" for a in absorbed), q, s_y.astype(np.float32), int(zp_y))


class _Params:
    """New int32/int8 buffers of the lowered layers, named after the layer's weight."""

    def __init__(self, g: Graph, weights: dict[str, np.ndarray]):
        self.g, self.weights = g, weights
        self.names = {p.name for p in g.params}

    def add(self, base: str, what: str, arr: np.ndarray, span) -> Value:
        name, i = f"{base}.{what}", 1
        while name in self.names:
            name, i = f"{base}.{what}_{i}", i + 1
        self.names.add(name)
        dt = DType.i8 if arr.dtype == np.int8 else DType.i32
        p = self.g.add_param(ParamInfo(name, Init.make("zeros"), trainable=False, span=span),
                             TensorType(dt, arr.shape), buffer=True)
        self.weights[name] = arr
        return p

    def drop(self, values: list[Value]) -> None:
        ids = {v.id for v in values}
        self.g.params = [p for p in self.g.params if p.id not in ids]
        for v in values:
            self.names.discard(v.name)
            self.weights.pop(v.name, None)


def _base(site: _Site) -> str:
    name = site.w_value.name if site.w_value is not None else (site.layer.scope or "qdq")
    for suffix in ("_quantized", ".weight", "_weight"):
        name = name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else name
    return name


def _lower(g: Graph, site: _Site, bias_q: np.ndarray, mult: np.ndarray, shift: np.ndarray,
           params: _Params) -> bool:
    """Insert the int8 op in place of the quantize; False (and nothing changed) if its rule refuses."""
    n, base, span = site.layer, _base(site), site.layer.span
    made = [params.add(base, "bias_q", bias_q, span), params.add(base, "multiplier", mult, span),
            params.add(base, "shift", shift, span)]
    w = site.w_value
    if w is None:
        w = params.add(base, "weight_q", site.w_q, span)
        made.append(w)
    attrs = dict(x_zero_point=site.zp_x, y_zero_point=site.zp_y, relu=site.relu,
                 out_dtype=site.q.outputs[0].type.dtype.numpy_name)
    if n.op.name == "conv2d":
        a = n.attrs
        attrs.update(stride=a["stride"], padding=symmetric_padding(n), dilation=a["dilation"], groups=a["groups"])
    try:
        y = g.add_node(OPS[_INT8_OP[n.op.name]], [site.x_q, w, *made[:3]], attrs, span, n.scope)[0]
    except ShapeError:
        params.drop(made)
        return False
    g.nodes.insert(g.nodes.index(site.q), g.nodes.pop())      # where the quantize was: operands come first
    replace_uses(g, {site.q.outputs[0].id: y})
    return True


def lower_qdq(g: Graph, weights: dict[str, np.ndarray]) -> Counter:
    """Rewrite every matching QDQ layer of `g` (top level) into qconv2d / qdense, in place, and drop
    what only the float layers used; returns the counts (`kept_float`: quantized layers that do not fit)."""
    counts: Counter = Counter()
    known, params = _Known(weights), _Params(g, weights)
    used_before = _used_params(g)
    lowered: list[Node] = []
    for n in [n for n in g.nodes if n.op.name in _INT8_OP]:
        if not all(_producer(v, "dequantize_linear") for v in n.inputs[:2]):
            continue                  # not a quantized layer
        if _try_lower(g, n, known, params):
            counts[_INT8_OP[n.op.name]] += 1
            lowered.append(n)
        else:
            counts["kept_float"] += 1
    if lowered:
        dce_graph(g)
        gone = {v.id for n in lowered for v in n.outputs}
        g.layers = [r for r in g.layers if not any(v.id in gone for v in r.outputs)]
        unused = used_before - _used_params(g)
        params.drop([p for p in g.params if p.id in unused])
    return counts


def _try_lower(g: Graph, n: Node, known: _Known, params: _Params) -> bool:
    site = _match(n, users(g), escaping(g), known)
    if site is None or not all(np.all(np.isfinite(s) & (s > 0)) for s in (site.s_x, site.s_w, site.s_y)):
        return False                  # a zero scale: ONNX's float form says what it computes
    bias_q = _bias_q(site, known)
    try:
        mult, shift = fixed_point_multipliers(real_multiplier(site.s_x, site.s_w, site.s_y))
    except ValueError:                # no shift in [1, 62]: the float form computes it
        return False
    return bias_q is not None and _lower(g, site, bias_q, mult, shift, params)


def _used_params(g: Graph) -> set[int]:
    ids = {p.id for p in g.params}
    used = {v.id for n in g.walk() for v in n.inputs if v is not None and v.id in ids}
    return used | {v.id for v in g.outputs if v is not None and v.id in ids}
