"""Demand-driven import-time evaluation of shape-like operands.

dlc compiles static shapes, so an operand such as Reshape's shape, Range's
limit or a Loop's trip count must be known when the model is imported.  Most
are folded as they are converted (`ops_shape.py` folds integer shape
arithmetic), but a chain on floats (`Cast(size) -> Sub -> Ceil -> Cast`, as
the expanded Range/window functions compute a length), an op the converters
keep in the graph (Split of a shape) or a graph input given a value at import
time (`input_values=`) stays an IR value.  When a converter then needs it
(`Ctx.need_const`), the ONNX nodes that produced it are evaluated here, with
ONNX's reference implementation of each op, from the import-time constants
and the given input values: only the chain the operand needs is folded, and
every other use of those values stays in the compiled graph.  An If node
evaluates the branch its (known) condition picks; a value that depends on a
run-time input or a Loop/Scan body's per-iteration value is not known, and the
converter reports it as before.
"""
from __future__ import annotations

import numpy as np

from .registry import normalize_domain

MAX_ELEMENTS = 1 << 16      # a shape computation, not a tensor computation
MAX_NODES = 4096            # nodes evaluated for one operand


class _Unknown(Exception):
    """The value depends on something not known at import time."""


def evaluate(cx, name: str) -> np.ndarray | None:
    """The value of ONNX value `name` computed from import-time knowledge, or None."""
    memo = cx.root.evaluated
    try:
        return _value(cx, name, memo, [0])
    except _Unknown:
        return None


def register(cx, node) -> None:
    """Remember which node (and context) produced each output, for `evaluate`."""
    for k, out in enumerate(node.output):
        if out:
            cx.root.producers[out] = (node, k, cx)


def _value(cx, name: str, memo: dict, budget: list) -> np.ndarray:
    if name in memo:
        return memo[name]
    known = cx.const(name)
    if known is None and name in cx.frozen:
        cx.frozen_used.add(name)
        known = np.asarray(cx.frozen[name])
    if known is None:
        entry = cx.root.producers.get(name)
        if entry is None:
            raise _Unknown(name)
        node, k, ncx = entry
        budget[0] += 1
        if budget[0] > MAX_NODES:
            raise _Unknown(name)
        known = _run(ncx, node, memo, budget)[k]
    if known.dtype == object or known.size > MAX_ELEMENTS:
        raise _Unknown(name)     # symbolic dimensions, or too big to be a shape
    memo[name] = known
    return known


def _run(cx, node, memo: dict, budget: list) -> list[np.ndarray]:
    if node.op_type == "If" and normalize_domain(node.domain) == "":
        cond = _value(cx, node.input[0], memo, budget)
        branch = next(a.g for a in node.attribute if a.name == ("then_branch" if bool(cond.reshape(-1)[0])
                                                                  else "else_branch"))
        return [_value(cx, vo.name, memo, budget) for vo in branch.output]
    if any(a.g.node or a.graphs for a in node.attribute):
        raise _Unknown(node.op_type)     # Loop/Scan bodies run per iteration
    inputs = [_value(cx, n, memo, budget) if n else None for n in node.input]
    from onnx.reference.ops import load_op
    domain = normalize_domain(node.domain)
    version = cx.opsets.get(domain)
    try:
        impl = load_op(node.domain, node.op_type, version, node=node)(node, _run_params(cx))
        outs = impl.run(*inputs)
    except Exception as e:      # an op or input the reference cannot evaluate: not known here
        raise _Unknown(node.op_type) from e
    return [np.asarray(o) for o in (outs if isinstance(outs, (tuple, list)) else (outs,))]


def _run_params(cx) -> dict:
    return {"log": lambda *a: None, "opsets": dict(cx.opsets), "verbose": 0, "new_ops": None,
            "existing_functions": {}, "evaluator_cls": None}
