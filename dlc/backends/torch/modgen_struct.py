"""The structured module: one `nn.Module` class per `.dln` block.

The block structure comes from the IR alone: `Graph.blocks` (one `BlockCall`
per application, recorded by the frontend: its scope, block, compile-time
arguments and input sizes) and the scopes of nodes and parameters.  Each
eligible instance (`modgen_blocks`) is generated like a small model of its
own, from its sub-graph, with the flat generator's machinery (layer plans,
`__init__` statements, the forward generator); its children appear in it as
single layer-like calls (``out = self.layer1(x)``).  The bodies of all
instances of a block are then fitted into one class (`modgen_fit`), blocks
before the blocks that apply them.  Besides:

* an instance that is nothing but a chain of child instances named 0, 1, ...
  (a `for` loop applying blocks, ResNet's ``ResLayer``) is an ``nn.Sequential``
  of them;
* child instances named ``h.0``, ``h.1``, ... applied one after the other on
  one value (GPT-2's twelve blocks) are an ``nn.ModuleList`` with a loop in
  forward;
* what cannot be expressed (an application reading parameters outside its
  scope, instances no single class fits) is written out flat inside its
  caller, with a comment that says why.

It runs on the module graph (`dlc.Model.module_graph`: the elaborated graph,
before the optimisation pipeline), as the flat generator does: the module's
state_dict names are dlc's parameter names either way.
"""
from __future__ import annotations

import keyword
from dataclasses import dataclass, field
from itertools import pairwise

from ...compiler.ir import BlockRef, Graph, Layer
from .funcgen import _BUILTINS, _comment_text
from .modgen_blocks import (
    Instance,
    find_instances,
    layers_of,
    relative_names,
    sub_graph,
    within,
)
from .modgen_fit import Body, ClassDef, FitError, class_name, fit_class
from .modgen_forward import _ForwardGen
from .modgen_init import _init_statements, _owned_layers
from .modgen_layers import _Layer, _plan_layers
from .modgen_names import _RESERVED_GLOBALS, SCOPE_CLASS, _Paths


@dataclass
class _Done:
    """How the caller builds a finished instance: a constructor expression (or None: flat)."""

    ctor: str | None
    kind: str = ""                      # the init comment's kind (`BasicBlock`)
    reason: str = ""                    # why it is flat


@dataclass
class _BodySource:
    """The generated body of one class (model or block instance)."""

    init: list[str]
    forward: str
    base: str
    uses_scope: bool
    training_child: bool
    mha: bool


@dataclass
class Structured:
    classes: list[str] = field(default_factory=list)    # block class sources, dependencies first
    notes: list[str] = field(default_factory=list)      # why parts are written out flat
    uses_scope: bool = False
    training_child: bool = False
    mha: bool = False


def _rel(name: str, prefix: str) -> str:
    return name[len(prefix) + 1:] if prefix else name


def _plan_children(inst_children: list[Instance], done: dict) -> list[Instance]:
    """The instances a body calls: its children, a flat child replaced by its own."""
    out = []
    for c in inst_children:
        if done[c.scope].ctor is not None:
            out.append(c)
        else:
            out += _plan_children(c.children, done)
    return out


def _chain(children: list[Instance], nodes: list, inputs: list, outputs: list, prefix: str) -> bool:
    """Whether `children` (named prefix.0, prefix.1, ...) are applied one after the
    other on one value, covering `nodes`, from `inputs` to `outputs`."""
    if len(children) < 2 or any(_rel(c.scope, prefix) != str(i) for i, c in enumerate(children)):
        return False
    if sum(len(c.nodes) for c in children) != len(nodes):
        return False
    if any(len(c.outputs) != 1 or len(c.inputs) != 1 for c in children):
        return False
    if children[0].inputs[0] is not inputs[0] or len(inputs) != 1 or outputs != children[-1].outputs:
        return False
    return all(b.inputs[0] is a.outputs[0] for a, b in pairwise(children))


def _module_lists(children: list[Instance], sub: Graph, prefix: str) -> list[tuple[str, list[Instance]]]:
    """Runs of children named P.0, P.1, ... chained on one value: (P, the run)."""
    groups: dict[str, list[Instance]] = {}
    for c in children:
        path, _, last = _rel(c.scope, prefix).rpartition(".")
        if path and last.isdigit():
            groups.setdefault(path, []).append(c)
    out = []
    for path, run in groups.items():
        full = f"{prefix}.{path}" if prefix else path
        nodes = [n for c in run for n in c.nodes]
        pos = [i for i, n in enumerate(sub.nodes) if any(n is m for m in nodes)]
        under = [p for p in sub.params if within(p.name, path)]
        owned = sum(len(c.params) for c in run)
        if pos != list(range(pos[0], pos[0] + len(pos))) if pos else True:
            continue
        if len(under) != owned or any(within(r.name, path) for r in sub.layers):
            continue
        if not _chain(run, nodes, run[0].inputs, run[-1].outputs, full):
            continue
        out.append((path, run))
    return out


def _call_plan(rec: Layer, ctor: str, nodes: list, inputs: list, outputs: list, loop: bool, sub: Graph):
    """A layer-like plan calling a block instance (or looping over a ModuleList)."""
    last = max(i for i, n in enumerate(sub.nodes) if n is nodes[-1])
    later = {v.id for n in sub.nodes[last + 1:] for v in n.inputs if v is not None}
    later |= {v.id for v in sub.outputs} | {v.id for v in sub.state_updates.values()}

    def call(gen, mod):
        args = [gen.name_of(v) for v in inputs]
        reuse = (len(inputs) == 1 and len(outputs) == 1 and inputs[0].id not in later
                 and args[0].isidentifier() and (not outputs[0].name or outputs[0].name == inputs[0].name))
        if reuse:
            gen.names[outputs[0].id] = args[0]
            outs = [args[0]]
        else:
            outs = [gen.define_layer_output(v) for v in outputs]
        if not loop:
            return [f"{', '.join(outs)} = {mod}({', '.join(args)})"]
        pre = [] if outs[0] == args[0] else [f"{outs[0]} = {args[0]}"]
        var = gen.namer.fresh("block")
        return pre + [f"for {var} in {mod}:", f"    {outs[0]} = {var}({outs[0]})"]
    return _Layer(rec, ctor, list(nodes), call, list(outputs), block=True)


def _generate_body(g: Graph, name: str, prefix: str, nodes, inputs, outputs, params, input_names: dict,
                   children: list[Instance], done: dict) -> _BodySource:
    """One class body: the graph part `nodes` with `children` called as modules."""
    kids = _plan_children(children, done)
    values = list(params) + list(inputs)
    with relative_names(g, prefix, values, list(nodes), input_names, list(outputs) if prefix else []):
        sub = sub_graph(g, name, prefix, nodes, inputs, outputs, params,
                        layers_of(g, prefix, [c.scope for c in kids]))
        fakes = []
        grouped = set()
        for path, run in _module_lists(kids, sub, prefix):
            ctors = [done[c.scope].ctor for c in run]
            same = all(c == ctors[0] for c in ctors)
            ctor = (f"nn.ModuleList([{ctors[0]} for _ in range({len(run)})])" if same
                    else f"nn.ModuleList([{', '.join(ctors)}])")
            rec = Layer(path, f"{len(run)} x {done[run[0].scope].kind}", run[0].call.span,
                        [p.name for c in run for p in c.params], list(run[-1].outputs))
            fakes.append(_call_plan(rec, ctor, [n for c in run for n in c.nodes], run[0].inputs,
                                    run[-1].outputs, True, sub))
            grouped.update(c.scope for c in run)
        for c in kids:
            if c.scope in grouped:
                continue
            rec = Layer(_rel(c.scope, prefix), done[c.scope].kind, c.call.span, [p.name for p in c.params],
                        list(c.outputs))
            fakes.append(_call_plan(rec, done[c.scope].ctor, c.nodes, c.inputs, c.outputs, False, sub))
        plans, owner = _owned_layers(sub, _plan_layers(sub) + fakes)
        if any(f not in plans for f in fakes):
            raise FitError("a block's name is also the path of a parameter")
        paths = _Paths()
        init, param_src = _init_statements(sub, paths, owner)
        dims = {k: v for k, v in g.dims.items() if isinstance(v, int)}
        fwd = _ForwardGen(sub, name, paths, plans, param_src, {r.name for r in sub.layers}
                          | {f.name for f in fakes}, dims)
        fwd.group_comments = False      # a class is its scope; its sub-scopes show in `self.a.b`
        forward = fwd.generate_forward(free=False)
    uses_scope = paths.indexed_root or any(f"{SCOPE_CLASS}()" in ln for ln in init)
    return _BodySource(init, forward, SCOPE_CLASS if paths.indexed_root else "nn.Module", uses_scope,
                paths.training_child, any(p.needs_mha for p in plans))


def _walk(insts: list[Instance]):
    for i in insts:
        yield i
        yield from _walk(i.children)


def _height(inst: Instance) -> int:
    return 1 + max((_height(c) for c in inst.children), default=0)


def _plain_args(inst: Instance, taken: frozenset = frozenset()) -> tuple[dict, list[str], list[str], dict]:
    """The instance's constructor arguments: (values by name, compile-time names, size names, defaults);
    none named like a global of the generated file (`taken`: the class names)."""
    ok = {n for n, v in inst.call.args if v is not None and not isinstance(v, BlockRef)}
    bad = lambda n: keyword.iskeyword(n) or n in _RESERVED_GLOBALS or n in taken or n == "self" \
        or n.startswith("_") or n in _BUILTINS
    cp = [n for n, _ in inst.call.args if n in ok and not bad(n)]
    dims = [n for n, _ in inst.call.dims if n not in cp and not bad(n)]
    vals = {n: v for n, v in inst.call.args if n in cp}
    vals.update({n: v for n, v in inst.call.dims if n in dims})
    # an input the block declares without sizes: its channels / features, as torchvision's inplanes
    shape = inst.inputs[0].type.shape if inst.inputs else ()
    for name, k in (("in_channels", 1), ("in_features", len(shape) - 1)):
        if 0 < k < len(shape) and type(shape[k]) is int and name not in vals and \
                not any(type(shape[k]) is int and v == shape[k] for n, v in inst.call.dims):
            dims.append(name)
            vals[name] = shape[k]
    defaults = {n: vals[n] for n in inst.call.defaults if n in vals}
    return vals, cp, dims, defaults


def _sequential(inst: Instance, done: dict) -> str | None:
    kids = _plan_children(inst.children, done)
    if inst.params and sum(len(c.params) for c in kids) != len(inst.params):
        return None
    if not _chain(kids, inst.nodes, inst.inputs, inst.outputs, inst.scope):
        return None
    return f"nn.Sequential({', '.join(done[c.scope].ctor for c in kids)})"


def structure(g: Graph, model_cls: str) -> tuple[Structured, _BodySource]:
    """The block classes of `g` and the model class's own body."""
    roots, flat = find_instances(g)
    out = Structured()
    done: dict[str, _Done] = {}
    by_block: dict[str, list[Instance]] = {}
    for inst in _walk(roots):
        by_block.setdefault(inst.call.block, []).append(inst)
    taken = {model_cls}
    for block in sorted(by_block, key=lambda b: max(_height(i) for i in by_block[b])):
        insts = by_block[block]
        seqs = [_sequential(i, done) for i in insts]
        if all(s is not None for s in seqs):
            for i, s in zip(insts, seqs):
                done[i.scope] = _Done(s, f"{block} - a for loop of blocks")
            continue
        try:
            cls = _fit_block(g, block, insts, done, taken, out)
        except FitError as e:
            for i in insts:
                done[i.scope] = _Done(None, reason=str(e))
            out.notes.append(f"block {block} is written out flat: {e}")
            continue
        for k, i in enumerate(insts):
            done[i.scope] = _Done(cls.ctor(k, _plain_args(i, frozenset(taken))[0]), block)
    for scope, why in flat.items():
        out.notes.append(f"{scope} is written out flat: {why}")
    top = _generate_body(g, model_cls, "", g.nodes, g.inputs, g.outputs, g.params, {}, roots, done)
    return out, top


def _fit_block(g: Graph, block: str, insts: list[Instance], done: dict, taken: set, out: Structured) -> ClassDef:
    name = class_name(block, taken)
    bodies, gens = [], []
    cparams, dims, defaults = [], [], {}
    for i in insts:
        vals, cp, dm, df = _plain_args(i, frozenset(taken))
        cparams = cparams or cp
        dims = dims or dm
        defaults.update(df)
        names = {v.id: _input_name(n) for n, v in i.call.inputs}
        gen = _generate_body(g, name, i.scope, i.nodes, i.inputs, i.outputs, i.params, names, i.children, done)
        bodies.append(Body(vals, gen.init, gen.forward))
        gens.append(gen)
    if len({gen.base for gen in gens}) != 1:
        raise FitError("instances need different base classes")
    cls = fit_class(name, bodies, cparams, dims, defaults)
    out.classes.append(class_source(cls, gens[0].base, block))
    out.uses_scope |= any(gen.uses_scope for gen in gens)
    out.training_child |= any(gen.training_child for gen in gens)
    out.mha |= any(gen.mha for gen in gens)
    return cls


def _input_name(declared: str) -> str:
    return declared.replace(".", "_")


def class_source(cls: ClassDef, base: str, block: str) -> str:
    sig = ", ".join(["self"] + [f"{p}={cls.defaults[p]!r}" if p in cls.defaults else p for p in cls.params])
    lines = [f"class {cls.name}({base}):",
             f'    """The .dln block {_comment_text(block)}, generated by dlc."""',
             "",
             f"    def __init__({sig}):",
             "        super().__init__()"]
    lines += ["        " + ln for ln in cls.init]
    lines.append("")
    lines += ["    " + ln if ln else "" for ln in cls.forward.rstrip("\n").split("\n")]
    return "\n".join(lines) + "\n"
