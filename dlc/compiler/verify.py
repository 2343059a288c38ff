"""The IR verifier: SSA, typing and structural invariants.

Run after every pass in the tests; on failure it prints the IR around the
node that breaks an invariant.
"""
from __future__ import annotations

from .ir import Graph, check_types
from .printer import print_graph


class VerifyError(AssertionError):
    pass


def verify(g: Graph, _outer: set | None = None) -> None:
    defined = set(_outer or ())
    for v in g.inputs:
        defined.add(v.id)
    root = g
    while root.parent is not None:
        root = root.parent
    for p in root.params:
        defined.add(p.id)
    names = [p.name for p in g.params]
    if len(names) != len(set(names)):
        raise VerifyError(f"{g.name}: duplicate parameter names")
    produced = set()
    for i, node in enumerate(g.nodes):
        for v in node.inputs:
            if v is not None and v.id not in defined:
                _fail(g, i, f"operand {v} of {node.op.name} is used before it is defined")
        try:
            if node.body is not None:
                verify(node.body, defined)
            check_types(node)
        except AssertionError as e:
            _fail(g, i, str(e))
        for o in node.outputs:
            if o.id in produced:
                _fail(g, i, f"value {o} is defined twice")
            if o.producer is not node:
                _fail(g, i, f"value {o} does not point back at its node")
            produced.add(o.id)
            defined.add(o.id)
        if node.span is None:
            _fail(g, i, f"{node.op.name} has no source span")
    for v in g.outputs:
        if v.id not in defined:
            raise VerifyError(f"{g.name}: output {v} is not defined")
    for name, v in g.state_updates.items():
        if v.id not in defined:
            raise VerifyError(f"{g.name}: state update of {name} uses an undefined value")


def _fail(g: Graph, i: int, msg: str):
    text = print_graph(g).splitlines()
    # header + params come first; show a window around the node
    offset = len(text) - len(g.nodes) - len(g.state_updates) - 2
    lo, hi = max(0, offset + i - 3), offset + i + 4
    window = "\n".join(("> " if k == offset + i else "  ") + text[k] for k in range(lo, min(hi, len(text))))
    raise VerifyError(f"{msg}\n{window}")
