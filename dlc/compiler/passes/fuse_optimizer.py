"""One fused `optimizer_update` region per parameter in a training step.

A training-step graph (`compiler.training.build_train_step`) returns, for
each trainable parameter P, the new weight `param:P` and its new optimizer
state `state:<s>.P`; its inputs hold the state `<s>.P`, `lr` and `step`.
P's update is the set of nodes that

* only P's update results need (every reader is another such node or P's
  results), and
* are reached from P itself, P's state inputs, `lr` or `step` through such
  nodes (the optimizer's arithmetic, not the backward: the gradient is an
  operand of the region, as are values several parameters share, such as a
  bias correction `1 - beta^step` that CSE merged),

plus the scalar constants only it reads.  That set becomes one region of
kind `optimizer_update`: its operands are P, its gradient, its state, `lr`,
`step` (and shared values), its results P's new state and weight in the
order the body computes them (the graph's `param:`/`state:` outputs read
them).  A gradient term that reads P itself and only P's update needs (the
derivative of an L2 penalty, 2·l2·P) joins the region too: the region is
still closed and convex.  A graph without `param:` outputs (a forward or
gradient graph in train mode) is left as it is.
"""
from __future__ import annotations

from ..ir import Graph, Node, Value
from .fusion_util import Uses, absorb_constants, fusable
from .pipeline import PassContext, register_pass
from .regions import outline_many


def _update_results(g: Graph) -> dict[str, tuple[list[Value], set[str]]]:
    """Parameter name -> (its `param:`/`state:` output values, its state input names).

    A state output is `state:<s>.<param>` where the state name `<s>` (exp_avg,
    momentum_buffer...) has no dot; its input is `<s>.<param>`."""
    out: dict[str, tuple[list[Value], set[str]]] = {}
    params = {p.name for p in g.trainable_params()}
    for name, v in zip(g.output_names, g.outputs):
        if name.startswith("param:") and name[6:] in params:
            out[name[6:]] = ([v], set())
    for name, v in zip(g.output_names, g.outputs):
        if name.startswith("state:") and "." in name[6:]:
            owner = name[6:].split(".", 1)[1]
            if owner in out:
                out[owner][0].append(v)
                out[owner][1].add(name[6:])
    return out


_SHARED = ""


def _owners(g: Graph, updates: dict, uses: Uses) -> dict[int, str]:
    """id(node) -> the parameter whose update results alone need it (one
    backward sweep over the graph; a node two parameters or any other
    output needs is absent)."""
    result_of = {v.id: name for name, (results, _) in updates.items() for v in results}
    other = {v.id for v in g.outputs if v.id not in result_of} | {v.id for v in g.state_updates.values()}
    owner: dict[int, str] = {}
    for n in reversed(g.nodes):
        found = None
        for o in n.outputs:
            claims = [result_of[o.id]] if o.id in result_of else []
            if o.id in other:
                claims.append(_SHARED)
            claims += [owner.get(id(u), _SHARED) for u in uses.of.get(o.id, [])]
            for c in claims:
                found = c if found is None or found == c else _SHARED
        if found and fusable(n):
            owner[id(n)] = found
    return owner


def update_region(g: Graph, param: Value, results: list[Value], state_names: set[str],
                  owner: dict[int, str]) -> list[Node]:
    """The nodes of `param`'s optimizer update (see the module docstring)."""
    seeds = {v.id for v in g.inputs if v.name in state_names or v.name in ("lr", "step")} | {param.id}
    inside: set[int] = set()
    group = []
    for n in g.nodes:                    # graph order: operands before readers
        if owner.get(id(n)) != param.name:
            continue
        if any(v is not None and (v.id in seeds or v.id in inside) for v in n.inputs):
            group.append(n)
            inside.update(o.id for o in n.outputs)
    # keep only what leads to `results` (a value computed from the seeds that
    # nothing of the update reads would be a stray result)
    needed = {v.id for v in results}
    kept = []
    for n in reversed(group):
        if any(o.id in needed for o in n.outputs):
            kept.append(n)
            needed.update(v.id for v in n.inputs if v is not None)
    return list(reversed(kept))


@register_pass("fuse_optimizer", level=2, modes=("train",),
               summary="one fused optimizer_update region per parameter of a training step")
def fuse_optimizer(g: Graph, ctx: PassContext) -> None:
    updates = _update_results(g)
    if not updates:
        return
    params = {p.name: p for p in g.trainable_params()}
    uses = Uses(g)
    owner = _owners(g, updates, uses)
    # the regions are disjoint (each node has one owner): find them all, then outline
    groups = [update_region(g, params[name], results, state_names, owner)
              for name, (results, state_names) in updates.items()]
    kept = [(name, group) for name, group in zip(updates, groups) if len(group) >= 2]
    made = outline_many(g, [(absorb_constants(group, uses), "optimizer_update", group[-1]) for _, group in kept])
    for (name, _), node in zip(kept, made):
        if node is not None:
            _name_gradient(node, params[name])
    ctx.count("regions", sum(1 for node in made if node is not None))


def _name_gradient(node: Node, param: Value) -> None:
    """Call the body input that is the gradient `grad.<param>` (an unnamed
    operand shaped like the parameter: what the backward hands the update)."""
    for inner, outer in zip(node.body.inputs, node.inputs):
        if not outer.name and outer.kind == "node" and outer.type == param.type:
            inner.name = f"grad.{param.name}"
            return
