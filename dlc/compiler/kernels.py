"""How many kernels a backend launches for a graph: the measure fusion lowers.

    from dlc.compiler.kernels import kernel_count
    kernel_count(g)          # lenet5: 11 at -O0, 7 at -O2 (four epilogues)

The rule, one top-level node at a time:

* a `fused` region is one kernel, whatever its body holds: that is what a
  region means (TVM makes one PrimFunc of it, torch one fused call, NumPy
  runs it into preallocated `out=` buffers);
* a `reshape` whose operand is not a `transpose` result, and an `expand`,
  are 0: they change only the shape/strides metadata of a contiguous buffer
  (NumPy and torch return a view, TVM folds the reshape into its
  neighbours).  A reshape of a transposed value is 1: the transpose is a
  strided view and reshaping it copies;
* a scalar constant (`full` with shape ()) is 0: every backend passes it as
  an immediate (a Python/NumPy scalar, a Relax constant), it launches
  nothing;
* a `scan` counts the kernels of its body once (per step) plus nothing for
  the loop itself, and a node of a scan body is counted by the same rule;
* a node that computes on the weights alone (`compiler/hoist.py`: the
  folded batch-norm weights) is 0 per run: TVM lifts it into
  `transform_params` and NumPy computes it once per set of weights;
* every other node is 1 (one library call, one ufunc, one generated loop).

The count is a static property of the IR, the same for every backend; it is
what `dlc info --memory` and the fusion tables report before and after the
pipeline.
"""
from __future__ import annotations

from .ir import Graph, Node

_VIEWS = {"expand"}


def node_kernels(node: Node) -> int:
    """The kernels one node launches (see the module docstring)."""
    name = node.op.name
    if name == "fused":
        return 1
    if name == "scan":
        return kernel_count(node.body)
    if name in _VIEWS:
        return 0
    if name == "reshape":
        src = node.inputs[0]
        return 1 if src is not None and src.producer is not None and src.producer.op.name == "transpose" else 0
    if name == "full" and tuple(node.attrs.get("shape", ())) == ():
        return 0
    return 1


def kernel_count(g: Graph) -> int:
    """The number of kernels a backend launches to run `g` once (the weights
    already loaded)."""
    from .hoist import weight_only_nodes
    once = {id(n) for n in weight_only_nodes(g, constants=False)} if g.parent is None else set()
    return sum(node_kernels(n) for n in g.nodes if id(n) not in once)


def kernel_counts_by_kind(g: Graph) -> dict[str, int]:
    """Fused regions per kind (`elementwise`, `conv_epilogue`...), scan bodies included, for reports."""
    out: dict[str, int] = {}
    for n in g.nodes:
        if n.op.name == "fused":
            out[n.attrs["kind"]] = out.get(n.attrs["kind"], 0) + 1
        elif n.body is not None:
            for kind, k in kernel_counts_by_kind(n.body).items():
                out[kind] = out.get(kind, 0) + k
    return out
