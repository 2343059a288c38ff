"""bf16 and fp16 nodes on TVM (`--precision`, the `autocast` pass).

A node that reads or makes bf16/fp16 values is lowered as its fp32 twin (a
shadow node with fp32 types, so every lowering is reused unchanged) on its
operands widened to fp32, and each result is rounded once to its type:
bf16 to bf16 precision in fp32 storage (`round_bf16`, the NumPy reference's
convention), fp16 by a real float16 cast.  That is the policy's fp32
accumulation for convolutions and matmuls, and the reference's semantics
for everything else, so TVM's outputs match the NumPy reference's rounding.

It is an emulation for speed purposes: the kernels still compute in fp32 (a
measured ratio is in bench/results/precision.md).  Casts, fused regions
(whose body nodes come through here one by one) and scans are left to their
own lowerings.
"""
from __future__ import annotations

from ...compiler.ir import Node, Value
from ...compiler.types import DType

_LOW = (DType.bf16, DType.f16)
_OWN = frozenset({"cast", "fused", "scan"})


def is_low(node: Node) -> bool:
    if node.op.name in _OWN:
        return False
    return any(v is not None and v.type.dtype in _LOW for v in node.inputs) or \
        any(v.type.dtype in _LOW for v in node.outputs)


def _f32(v: Value | None) -> Value | None:
    if v is None or v.type.dtype not in _LOW:
        return v
    return Value(v.type.with_dtype(DType.f32), v.name, v.kind)


def lower_widened(low, fn, node: Node, args: list, env: dict) -> list:
    from tvm import relax

    from .lowering_elementwise import round_bf16
    shadow = Node(node.op, [_f32(v) for v in node.inputs], node.attrs, node.span, node.scope, node.body)
    shadow.outputs = [Value(v.type.with_dtype(DType.f32) if v.type.dtype in _LOW else v.type, "", "node",
                            shadow, i) for i, v in enumerate(node.outputs)]
    wide = []
    for v, s, a in zip(node.inputs, shadow.inputs, args):
        if v is not None and v.type.dtype == DType.f16:
            a = low.emit(relax.op.astype(a, "float32"))
        if s is not None:
            env[s.id] = a
        wide.append(a)
    outs = fn(low, shadow, wide, env)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    res = []
    for v, o in zip(node.outputs, outs):
        if v.type.dtype == DType.bf16:
            o = round_bf16(low, o)
        elif v.type.dtype == DType.f16:
            o = low.emit(relax.op.astype(o, "float16"))
        res.append(o)
    return res
