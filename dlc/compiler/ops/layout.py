"""The activation layout of the spatial ops: ``layout="NCHW"`` (PyTorch's, the
default) or ``"NHWC"`` (channels last, what the TVM CPU schedules want).

conv2d, max_pool2d, avg_pool2d, adaptive_avg_pool2d and batch_norm take the
attribute.  It names the layout of the activation operand and of the first
result only: a convolution's weight stays (O, I/groups, kh, kw) and batch
norm's statistics stay (C,), so parameters, checkpoints and initialisers do
not change with the layout; a backend that wants another weight layout
reorders the weight itself (TVM's weight transforms are lifted out of the
per-call work).

An NHWC op means exactly "transpose to NCHW, the NCHW op, transpose back",
and that is how its shape rule and VJP rule are defined here: one wrapper per
rule, so the NCHW rules stay the only definition of the maths.  The layout
pass (`compiler/passes/layout.py`) introduces NHWC ops.
"""
from __future__ import annotations

from ...errors import ShapeError
from ..ir import Node
from .registry import OPS

NCHW, NHWC = "NCHW", "NHWC"
LAYOUTS = (NCHW, NHWC)
TO_NHWC = (0, 2, 3, 1)       # transpose axes: an NCHW tensor -> NHWC
TO_NCHW = (0, 3, 1, 2)       # an NHWC tensor -> NCHW

LAYOUT_OPS = ("conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm")


def layout_of(node_or_attrs) -> str:
    attrs = node_or_attrs if isinstance(node_or_attrs, dict) else node_or_attrs.attrs
    return attrs.get("layout", NCHW)


def permuted(t, axes):
    return t.with_shape(tuple(t.shape[a] for a in axes))


def _check(attrs, x, opname: str) -> str:
    lay = attrs.get("layout", NCHW)
    if lay not in LAYOUTS:
        raise ShapeError(f"{opname}: layout must be 'NCHW' or 'NHWC', got {lay!r}")
    if lay == NHWC and (x is None or x.rank != 4):
        raise ShapeError(f"{opname}: layout='NHWC' needs a rank-4 input (N, H, W, C), got {x}",
                         "use layout='NCHW' for unbatched inputs")
    return lay


def _layout_infer(infer, opname: str):
    def rule(ts, attrs):
        if _check(attrs, ts[0] if ts else None, opname) == NCHW:
            return infer(ts, attrs)
        out = infer([permuted(ts[0], TO_NCHW)] + list(ts[1:]), {**attrs, "layout": NCHW})
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        outs[0] = permuted(outs[0], TO_NHWC)
        return outs
    return rule


def _layout_vjp(rule):
    """The NCHW rule applied to an NCHW view of an NHWC node: the input and the
    cotangent transposed in, the input's gradient transposed back."""
    def vjp(b, node, g):
        if layout_of(node) == NCHW:
            return rule(b, node, g)
        x = b.op("transpose", node.inputs[0], axes=TO_NCHW)
        view = Node(node.op, (x,) + tuple(node.inputs[1:]), {**node.attrs, "layout": NCHW}, node.span,
                    node.scope)
        # real values (a rule may read a result): the NCHW first result, the others as they are
        view.outputs = [b.op("transpose", node.outputs[0], axes=TO_NCHW)] + list(node.outputs[1:])
        gs = [None if gi is None else (b.op("transpose", gi, axes=TO_NCHW) if i == 0 else gi)
              for i, gi in enumerate(g)]
        res = list(rule(b, view, gs))
        if res and res[0] is not None:
            res[0] = b.op("transpose", res[0], axes=TO_NHWC)
        return res
    return vjp


def enable_layout(*names: str) -> None:
    """Give ops (defined with their NCHW rules) the ``layout`` attribute."""
    for name in names:
        op = OPS[name]
        op.attrs["layout"] = NCHW
        op.infer_fn = _layout_infer(op.infer_fn, name)
        if op.vjp is not None:
            op.vjp = _layout_vjp(op.vjp)
