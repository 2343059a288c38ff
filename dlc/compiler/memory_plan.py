"""Memory planning: which activations can share a buffer, found by liveness.

A graph runs its nodes in order; node `i` is step `i`.  A node result lives
from the step that defines it to the last step that reads it (a scan reads
the values its body captures, so they live to the scan); graph outputs and
state updates live to the end (step `len(nodes)`), and a result nobody reads
dies where it is made.  A scan or fused node is one step: what its body
allocates is the node's workspace, not the graph's.

Graph inputs, parameters and buffers are the caller's and are not planned.
A `reshape` or `transpose` is a view of its operand (NumPy and torch make
no copy), so it shares its operand's storage and extends that storage's
life; a reshape of a transpose copies (its operand is strided).

Buffers are byte arenas, not typed: any value may take any buffer at least
its size, whatever its dtype (a backend views the bytes as the dtype it
needs).  That lets an int64 index array reuse a float buffer, which
same-dtype pools would forbid, at the cost of the backend viewing bytes.
Assignment is greedy by size: the largest storage first, each into the
smallest existing buffer (best fit) whose values are all dead during its
life, else into a new buffer of its size.  Because storages come largest
first, a buffer's size is that of its first value.  The planned peak is the
sum of the buffer sizes; `live_peak`, the most bytes alive at any one step,
is the bound no assignment can beat.

    plan = plan_memory(graph, {"N": 1})
    plan.naive, plan.peak, plan.live_peak, plan.kernels
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Callable

from .ir import Graph, Node, Value, free_values
from .memory import tensor_bytes

# ops whose result is a view of operand 0 (no bytes of their own) -- except a
# reshape of a transpose, whose strided operand it has to copy
ALIAS_OPS = frozenset({"reshape", "transpose"})


def is_view(node: Node) -> bool:
    """Whether `node`'s result shares operand 0's bytes."""
    if node.op.name not in ALIAS_OPS or node.inputs[0] is None:
        return False
    src = node.inputs[0].producer
    return not (node.op.name == "reshape" and src is not None and src.op.name == "transpose")


@dataclass
class Storage:
    """The bytes of one value (and of the views that alias it): live from
    step `start` to step `end`, both included."""
    value: Value
    start: int
    end: int
    size: int
    views: list[Value] = field(default_factory=list)

    def overlaps(self, start: int, end: int) -> bool:
        return self.start <= end and start <= self.end


@dataclass
class MemoryPlan:
    naive: int                    # every node result kept to the end (views excluded)
    peak: int                     # the sum of the planned buffers
    live_peak: int                # the most activation bytes alive at one step
    peak_step: int                # the step of the peak (len(nodes): the outputs)
    workspace_peak: int           # max over steps of live bytes + that step's workspace
    buffers: list[int]            # buffer sizes, largest first
    assignment: dict[int, int]    # storage value id -> buffer index
    storages: list[Storage]
    kernels: int

    @property
    def saving(self) -> float:
        """How much smaller the planned peak is than the naive total (0..1)."""
        return 1.0 - self.peak / self.naive if self.naive else 0.0


def node_uses(node: Node) -> list[Value]:
    """The values `node` reads: its operands and, for a scan, what its body captures."""
    used = [v for v in node.inputs if v is not None]
    if node.body is not None:
        used += free_values(node.body)
    return used


def last_uses(g: Graph) -> list[list[Value]]:
    """For each node index, the results defined in `g` whose last reader that
    node is (or the node itself, for a result nobody reads): what can be
    freed once it has run.  Outputs and state updates are never listed."""
    keep = {v.id for v in g.outputs} | {v.id for v in g.state_updates.values()}
    last: dict[int, int] = {}
    for i, n in enumerate(g.nodes):
        for v in n.outputs:
            last[v.id] = i
        for v in node_uses(n):
            if v.id in last:
                last[v.id] = i
    frees: list[list[Value]] = [[] for _ in g.nodes]
    for n in g.nodes:
        for v in n.outputs:
            if v.id not in keep:
                frees[last[v.id]].append(v)
    return frees


def storages(g: Graph, dims: dict) -> list[Storage]:
    """The activation storages of `g` with their live ranges, in definition order."""
    end_step = len(g.nodes)
    own: dict[int, Storage] = {}       # value id -> the storage holding it
    out: list[Storage] = []
    for i, n in enumerate(g.nodes):
        for v in node_uses(n):
            s = own.get(v.id)
            if s is not None:
                s.end = max(s.end, i)
        view = is_view(n)
        base = own.get(n.inputs[0].id) if view else None
        for v in n.outputs:
            if base is not None:
                base.views.append(v)
                base.end = max(base.end, i)
                own[v.id] = base
            elif view:
                continue          # a view of an input or a parameter: the caller's bytes
            else:
                s = own[v.id] = Storage(v, i, i, tensor_bytes(v.type, dims))
                out.append(s)
    for v in list(g.outputs) + list(g.state_updates.values()):
        s = own.get(v.id)
        if s is not None:
            s.end = end_step
    return out


def assign_buffers(stores: list[Storage]) -> tuple[list[int], dict[int, int]]:
    """Greedy by size, best fit: (buffer sizes, storage value id -> buffer)."""
    sizes: list[int] = []
    # per buffer, its storages' (start, end) sorted by start: an overlap test is a bisect
    spans: list[list[tuple[int, int]]] = []
    assignment: dict[int, int] = {}
    for s in sorted((s for s in stores if s.size > 0), key=lambda s: (-s.size, s.start)):
        best = None
        for b, taken in enumerate(spans):
            if (best is None or sizes[b] < sizes[best]) and not _collides(taken, s.start, s.end):
                best = b
        if best is None:
            best = len(sizes)
            sizes.append(s.size)
            spans.append([])
        bisect.insort(spans[best], (s.start, s.end))
        assignment[s.value.id] = best
    return sizes, assignment


def _collides(taken: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether [start, end] meets any of the disjoint, start-sorted intervals `taken`."""
    k = bisect.bisect_right(taken, (end, float("inf")))
    return k > 0 and taken[k - 1][1] >= start


def live_bytes(stores: list[Storage], steps: int) -> list[int]:
    """Activation bytes alive at each step 0..steps (inclusive)."""
    delta = [0] * (steps + 2)
    for s in stores:
        delta[s.start] += s.size
        delta[s.end + 1] -= s.size
    live, acc = [], 0
    for d in delta[:steps + 1]:
        acc += d
        live.append(acc)
    return live


def count_kernels(g: Graph) -> int:
    """Kernels a backend launches for `g` (`compiler.kernels.kernel_count`)."""
    from .kernels import kernel_count
    return kernel_count(g)


def plan_memory(g: Graph, dims: dict, workspace: Callable[[Node, dict], int] | None = None) -> MemoryPlan:
    """The buffer plan of `g` at the bound sizes `dims`.  `workspace(node,
    dims)`, when given, is the scratch a backend allocates while running a
    node (only `workspace_peak` counts it)."""
    stores = storages(g, dims)
    steps = len(g.nodes)
    live = live_bytes(stores, steps)
    sizes, assignment = assign_buffers(stores)
    ws = [workspace(n, dims) for n in g.nodes] + [0] if workspace else [0] * (steps + 1)
    peak_step = max(range(steps + 1), key=lambda t: live[t])
    return MemoryPlan(
        naive=sum(s.size for s in stores),
        peak=sum(sizes), live_peak=live[peak_step], peak_step=peak_step,
        workspace_peak=max(a + b for a, b in zip(live, ws)),
        buffers=sizes, assignment=assignment, storages=stores, kernels=count_kernels(g))


def summary(g: Graph, dims: dict, workspace: Callable[[Node, dict], int] | None = None) -> dict:
    """What `dlc info --memory` shows of one graph: bytes and counts, JSON-ready.
    `interpreter_peak` is the plan's live peak plus the NumPy kernels' scratch
    (`workspace`): what the interpreter allocates beyond inputs and weights."""
    plan = plan_memory(g, dims, workspace)
    return {"nodes": len(g.nodes), "kernels": plan.kernels, "naive_bytes": plan.naive,
            "planned_bytes": plan.peak, "live_peak_bytes": plan.live_peak, "buffers": len(plan.buffers),
            "interpreter_peak_bytes": plan.workspace_peak, "saving": round(plan.saving, 4)}
