"""How many layer or block instances the right-hand side of a binding makes.

`conv1 = conv2d(x, 64, kernel=3)` names its one layer `conv1`;
`y = conv2d(...) |> batchnorm` names its two `y.0` and `y.1`, the way
`nn.Sequential` numbers its children.  Counting happens before evaluation so
that names never have to be rewritten.
"""
from __future__ import annotations

from . import ast as A
from .values import BlockValue, Builtin, PartialBlock


def _head(frame, e):
    if isinstance(e, A.Name):
        try:
            return frame.lookup(e.id, e.span)
        except Exception:
            return None
    if isinstance(e, A.Attr) and isinstance(e.value, A.Name):
        try:
            from .modules import module_lookup
            mod = frame.lookup(e.value.id, e.span)
            found, v = module_lookup(mod, e.name, frame.ctx)
            return v if found else None
        except Exception:
            return None
    return None


def _is_instance_maker(v) -> bool:
    return (isinstance(v, Builtin) and v.kind == "layer") or isinstance(v, PartialBlock) or (
        isinstance(v, BlockValue) and not v.has_cparams)


def count_instances(e, frame) -> int:
    n = 0
    if isinstance(e, A.Call):
        if isinstance(e.func, A.Call):  # Block(args)(x)
            n += 1
            n += sum(count_instances(a, frame) for a in e.func.args)
        else:
            head = _head(frame, e.func)
            if _is_instance_maker(head):
                n += 1
            elif isinstance(head, Builtin) and head.name == "scan":
                n += 1
        n += sum(count_instances(a, frame) for a in e.args)
        n += sum(count_instances(k.value, frame) for k in e.kwargs)
        return n
    if isinstance(e, A.Pipe):
        n += count_instances(e.value, frame)
        st = e.stage
        if isinstance(st, A.Call):
            head = _head(frame, st.func) if not isinstance(st.func, A.Call) else None
            if _is_instance_maker(head) or (isinstance(head, BlockValue) and head.has_cparams) \
                    or isinstance(st.func, A.Call):
                n += 1
            n += sum(count_instances(a, frame) for a in st.args)
        else:
            if _is_instance_maker(_head(frame, st)):
                n += 1
        return n
    for child in _children(e):
        n += count_instances(child, frame)
    return n


def _children(e):
    if isinstance(e, (A.BinOp, A.Compare, A.BoolOp)):
        return [e.left, e.right]
    if isinstance(e, (A.Not, A.Neg)):
        return [e.operand]
    if isinstance(e, A.IfExp):
        return [e.cond, e.then, e.other]
    if isinstance(e, (A.TupleLit, A.ListLit)):
        return e.items
    if isinstance(e, A.Index):
        return [e.value]
    if isinstance(e, A.Attr):
        return [e.value]
    return []
