"""Fusion: group nodes into `fused` regions a backend runs as one kernel.

Three rules, in this order (each sees what the previous left):

1. patterns written out as elementwise ops and reductions: layer norm,
   softmax / log-softmax and GELU (`fusion_patterns.py`) become regions of
   kind `layernorm`, `softmax`, `gelu`.  The zoo calls `layer_norm`,
   `softmax` and `gelu` as ops, which are single kernels already; the rule
   is for specs that write them out.
2. epilogues: a conv1d/conv2d (kind `conv_epilogue`) or matmul/linear (kind
   `matmul_epilogue`) with the chain that follows it while each link is the
   previous value's only reader: `add` (bias or residual, its other operand
   from outside) and unary activations.
3. elementwise regions: each elementwise node, from the last, pulls in the
   elementwise producers of the same output shape whose every reader is in
   the region (so no intermediate is written out), and the scalar constants
   only the region reads.  A region of one op is no region.

Invariants, kept by `fusable` and `regions.outline`: no random op joins a
region (draws stay where they are), no node with a body, no fused node; a
region is convex (outline refuses a group that a path leaves and re-enters);
a value that a graph output or state update needs stays a result.  Scan
bodies get regions of their own (the scan itself is never in one).  In a
training graph the backward's elementwise chains fuse too; forward values
the backward reads stay results of their regions (or outside them).
"""
from __future__ import annotations

from ..hoist import weight_only_nodes
from ..ir import Graph, Node
from ..ops.registry import ACTIVATION, CONV, ELEMENTWISE, UNARY
from .fusion_patterns import PATTERNS
from .fusion_util import Uses, absorb_constants, fusable, is_scalar_const_node, producer
from .pipeline import PassContext, register_pass
from .regions import outline, outline_many

_CONV_ANCHORS = {"conv1d", "conv2d", "conv3d"}
_MATMUL_ANCHORS = {"matmul", "linear"}
# unary ops that count as an epilogue's activation (besides the ACTIVATION group)
_SQUASH = {"sigmoid", "tanh"}


def _activation(n: Node) -> bool:
    return UNARY in n.op.groups and (ACTIVATION in n.op.groups or n.op.name in _SQUASH)


def fuse_patterns(g: Graph, ctx: PassContext, skip: frozenset = frozenset()) -> None:
    uses = Uses(g)
    gone: set[int] = set(skip)
    for n in list(reversed(g.nodes)):
        if id(n) in gone or not fusable(n):
            continue
        for kind, match in PATTERNS:
            group = match(n, uses)
            if group is None or not all(fusable(m) for m in group) or any(id(m) in gone for m in group):
                continue
            ctx.node = n
            group = absorb_constants(group, uses)
            if outline(g, group, kind, anchor=group[-1]) is not None:
                ctx.count(kind)
                gone.update(id(m) for m in group)
                uses.refresh()
                break


def _epilogue(anchor: Node, uses: Uses, taken: set[int]) -> list[Node]:
    """`anchor` and the bias/activation/residual chain its result runs through."""
    group, cur = [anchor], anchor
    shape = anchor.outputs[0].type.shape
    while len(cur.outputs) == 1:
        u = uses.sole_user(cur.outputs[0])
        if u is None or id(u) in taken or not fusable(u) or u.outputs[0].type.shape != shape:
            break
        if u.op.name == "add" or (_activation(u) and u.inputs[0] is cur.outputs[0]):
            group.append(u)
            cur = u
        else:
            break
    return group


def fuse_epilogues(g: Graph, ctx: PassContext, skip: frozenset = frozenset()) -> None:
    # the groups are disjoint (a residual add two anchors reach goes to the
    # first), so they are all found on the unchanged graph, then outlined
    uses = Uses(g)
    taken: set[int] = set(skip)
    groups = []
    for n in g.nodes:
        kind = ("conv_epilogue" if n.op.name in _CONV_ANCHORS and CONV in n.op.groups else
                "matmul_epilogue" if n.op.name in _MATMUL_ANCHORS else None)
        if kind is None or not fusable(n) or id(n) in skip:
            continue
        group = _epilogue(n, uses, taken)
        if len(group) >= 2:
            taken.update(id(m) for m in group)
            groups.append((kind, absorb_constants(group, uses)))
    ctx.node = groups[0][1][-1] if groups else None
    made = outline_many(g, [(group, kind, next(m for m in group if m.op.name in _CONV_ANCHORS | _MATMUL_ANCHORS))
                            for kind, group in groups])
    for (kind, _), node in zip(groups, made):
        if node is not None:
            ctx.count(kind)


def _pointwise(n: Node) -> bool:
    return ELEMENTWISE in n.op.groups and len(n.outputs) == 1 and fusable(n)


def _elementwise_region(root: Node, uses: Uses, taken: set[int]) -> list[Node]:
    """`root` and, to a fixed point, the elementwise producers of its shape that only the region reads."""
    shape = root.outputs[0].type.shape
    group, ids = [root], {id(root)}
    grown = True
    while grown:
        grown = False
        for n in list(group):
            for v in n.inputs:
                p = producer(v)
                if (p is None or id(p) in ids or id(p) in taken or not _pointwise(p)
                        or p.outputs[0].type.shape != shape or not uses.only_in(v, ids)):
                    continue
                group.append(p)
                ids.add(id(p))
                grown = True
    return group


def fuse_elementwise(g: Graph, ctx: PassContext, skip: frozenset = frozenset()) -> None:
    uses = Uses(g)
    taken: set[int] = set(skip)
    groups = []
    for n in reversed(g.nodes):
        if id(n) in taken or not _pointwise(n):
            continue
        group = _elementwise_region(n, uses, taken)
        taken.update(id(m) for m in group)
        if sum(1 for m in group if not is_scalar_const_node(m)) >= 2:
            groups.append(group)
    # disjoint groups, found on the unchanged graph: outline them all
    ctx.node = groups[0][0] if groups else None
    made = outline_many(g, [(absorb_constants(group, uses), "elementwise", group[0]) for group in groups])
    ctx.count("elementwise", sum(1 for node in made if node is not None))


@register_pass("fusion", level=2, summary="fused regions: elementwise chains, conv/matmul epilogues, "
               "written-out layernorm/softmax/gelu")
def fusion(g: Graph, ctx: PassContext) -> None:
    # nodes computing on the weights alone (folded batch-norm scales) are left
    # out: backends run them once per set of weights (compiler/hoist.py), not per run
    skip = frozenset(id(n) for n in weight_only_nodes(g, constants=False))
    fuse_patterns(g, ctx, skip)
    fuse_epilogues(g, ctx, skip)
    fuse_elementwise(g, ctx, skip)
    # a scan's body (a recurrent cell) runs once per step: its regions save the most
    for n in g.nodes:
        if n.op.name == "scan":
            fusion(n.body, ctx)
