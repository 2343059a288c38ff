"""Where the graph's instances are: the node range each parameter path spans.

A candidate instance is a path `P` that prefixes the parameters of at least
one layer (`layer1.0` for `layer1.0.conv1.weight`).  Its *core* range runs
from the first to the last top-level node reading a parameter under `P`,
and is valid when no node in it reads a parameter outside `P`.  Instances
whose cores have the same structure then take the param-free nodes that
follow every one of them (a residual block's `add` and `relu`), as many as
all of them have.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...compiler.ir import Graph, Node, Value, free_values


@dataclass
class Region:
    path: str
    start: int
    end: int                     # inclusive
    inputs: list = field(default_factory=list)    # values defined before, read inside (no params)
    outputs: list = field(default_factory=list)   # values defined inside, read after or returned

    def contains(self, other: "Region") -> bool:
        return self.start <= other.start and other.end <= self.end and (self.start, self.end) != (
            other.start, other.end)

    def overlaps(self, other: "Region") -> bool:
        return not (self.end < other.start or other.end < self.start)


def node_params(n: Node) -> list[Value]:
    vals = list(n.inputs) + (list(free_values(n.body)) if n.body is not None else [])
    return [v for v in vals if v is not None and v.kind in ("param", "buffer")]


def param_keys(g: Graph, loose: set | None = None, tied=frozenset()) -> list[list[str]]:
    """Per top-level node, the names its parameters will have in the spec (`<layer path>.<role>` for a
    layer call, whose path may come from the node's scope; the graph's name otherwise)."""
    from .body import count_uses
    from .layers import layer_path, recognise
    uses = count_uses(g.nodes, g.outputs)
    out = []
    for n in g.nodes:
        lc = recognise(n, uses, tied)
        if lc is not None:
            path = layer_path(lc)
            out.append([f"{path}.{role}" for _, role in lc.roles])
            if lc.post_bias is not None and lc.post_bias.kind in ("param", "buffer") and loose is not None:
                loose.add(lc.post_bias.id)      # a shared bias: passed to a block like any tensor
        else:
            out.append([p.name for p in node_params(n)])
    return out


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def candidate_paths(per_node: list) -> set[str]:
    layer_paths = {_parent(p) for ps in per_node for p in ps}
    out = set()
    for lp in layer_paths:
        parts = lp.split(".")
        for k in range(1, len(parts)):
            out.add(".".join(parts[:k]))
    return out - layer_paths


def _under(name: str, path: str) -> bool:
    return name.startswith(path + ".")


def interface(nodes: list, start: int, end: int, outputs: list, loose=frozenset()) -> tuple[list, list]:
    """The values a node range reads from before it, and those it defines that are read after it
    (`loose` parameters, shared between instances, are read like any other value)."""
    inside = set()
    ins, seen = [], set()
    for n in nodes[start:end + 1]:
        reads = list(n.inputs) + (list(free_values(n.body)) if n.body is not None else [])
        for v in reads:
            if v is None or (v.kind in ("param", "buffer") and v.id not in loose) or v.id in inside \
                    or v.id in seen:
                continue
            seen.add(v.id)
            ins.append(v)
        inside.update(o.id for o in n.outputs)
    later = {v.id for v in outputs}
    for n in nodes[end + 1:]:
        reads = list(n.inputs) + (list(free_values(n.body)) if n.body is not None else [])
        later.update(v.id for v in reads if v is not None)
    outs = [o for n in nodes[start:end + 1] for o in n.outputs if o.id in later]
    return ins, outs


def core_regions(g: Graph, per_node: list) -> list[Region]:
    out = []
    for path in sorted(candidate_paths(per_node)):
        idx = [i for i, ps in enumerate(per_node) if any(_under(p, path) for p in ps)]
        s, e = idx[0], idx[-1]
        if any(not _under(p, path) for ps in per_node[s:e + 1] for p in ps):
            continue
        out.append(Region(path, s, e))
    return out


def tail_length(g: Graph, r: Region, per_node: list, loose=frozenset()) -> int:
    """How many param-free nodes after `r` read only values of `r` or its inputs."""
    nodes = g.nodes
    ins, _ = interface(nodes, r.start, r.end, g.outputs, loose)
    known = {v.id for v in ins} | {o.id for n in nodes[r.start:r.end + 1] for o in n.outputs}
    k = 0
    for n in nodes[r.end + 1:]:
        if per_node[r.end + 1 + k] or n.body is not None:
            break
        if any(v is not None and v.id not in known and not (v.kind in ("param", "buffer") and v.id not in loose)
               for v in n.inputs):
            break
        known.update(o.id for o in n.outputs)
        k += 1
    return k


def finish(g: Graph, r: Region, tail: int, loose=frozenset()) -> Region:
    r = Region(r.path, r.start, r.end + tail)
    r.inputs, r.outputs = interface(g.nodes, r.start, r.end, g.outputs, loose)
    return r
