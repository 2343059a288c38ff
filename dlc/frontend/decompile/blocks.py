"""Repeated structure -> `block`s, applied where the instances were.

Instances are found from parameter paths (`regions.py`).  Each is written
flat once to get its shape: the text with every number blanked is its key.
Instances with equal keys are the same block; the numbers that differ
between them (channels, strides) become the block's compile-time
parameters, named after the argument they fill.  The outermost instances
whose key repeats are applied in the model; inside a block, an instance
becomes a nested block when it repeats within one application or is also
used elsewhere.  `loops.py` then folds chained applications into `for` loops.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...compiler.dims import Dim
from ...compiler.ir import Graph
from ...errors import DlcError
from .body import Stmt
from .exprs import Call
from .regions import Region, core_regions, finish, param_keys, tail_length
from .text import block_type_text, identifier, lit
from .writer import BodySpec, write_body

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*|\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+'
                    r'|\.\d+(?:[eE][-+]?\d+)?|\d+|\S')
# what a number is called by the argument it fills: function -> position -> name
ROLES = {"conv2d": {1: "channels", 2: "kernel"}, "conv1d": {1: "channels", 2: "kernel"},
         "conv_transpose2d": {1: "channels", 2: "kernel"}, "dense": {1: "units"}, "embedding": {1: "num", 2: "dim"},
         "groupnorm": {1: "groups"}, "lstm": {1: "hidden"}, "gru": {1: "hidden"}, "rnn": {1: "hidden"},
         "maxpool2d": {1: "kernel"}, "avgpool2d": {1: "kernel"}, "split": {1: "sections"}}
_INPUT_NAMES = ["x", "y", "z"]


def _is_num(tok: str) -> bool:
    return tok[0].isdigit() or (tok[0] == "." and len(tok) > 1)


def _split_comment(line: str) -> tuple[str, str]:
    k = line.find("#")          # generated code has no '#' inside strings
    return (line, "") if k < 0 else (line[:k], line[k:])


def tokens(lines: list[str]) -> list[tuple[int, re.Match]]:
    out = []
    for i, ln in enumerate(lines):
        code, _ = _split_comment(ln)
        out += [(i, m) for m in _TOKEN.finditer(code)]
    return out


def shape_key(lines: list[str], r: Region) -> tuple:
    toks = tuple("#" if _is_num(m.group()) else m.group() for _, m in tokens(lines))
    sig = tuple((str(v.type.dtype), v.type.rank) for v in r.inputs) + (len(r.outputs),)
    return toks + sig


@dataclass
class BlockDef:
    name: str
    param_names: list
    lines: list
    args: dict = field(default_factory=dict)        # instance path -> argument literals
    mappings: dict = field(default_factory=dict)    # instance path -> name in the block -> graph param
    fallback: int = 0
    layer_calls: int = 0
    loops: int = 0


@dataclass
class App:
    """One application of a block: `x = Name(args)(inputs, name="rel")`."""

    block: str
    args: list
    param_names: list
    rel: str
    inputs: list
    outputs: list
    params: dict

    def stmt(self) -> Stmt:
        fn = f"{self.block}({', '.join(self.args)})"
        pattern = ""
        if len(self.outputs) > 1:
            pattern = ", ".join("{%d}" % i for i in range(len(self.outputs)))
        return Stmt([], [Call(fn, list(self.inputs), [("name", lit(self.rel))])], list(self.outputs),
                    pattern=pattern, app=self, params=dict(self.params))


def _role(toks: list[str], k: int, params_of: dict) -> str:
    if k >= 2 and toks[k - 1] == "=" and re.fullmatch(r"[A-Za-z_]\w*", toks[k - 2]):
        return toks[k - 2]
    depth, commas = 0, 0
    for j in range(k - 1, -1, -1):
        t = toks[j]
        if t in ")]":
            depth += 1
        elif t in "([":
            if depth == 0:
                if t == "(" and j > 0:
                    fn = toks[j - 1]
                    piped = j >= 3 and toks[j - 3:j - 1] == ["|", ">"]   # `|> f(a)` is f(x, a)
                    pos = commas + piped
                    if fn in params_of and commas < len(params_of[fn]):
                        return params_of[fn][commas]
                    if fn == "reshape":
                        return "size"
                    return ROLES.get(fn, {}).get(pos, "n")
                return "n"
            depth -= 1
        elif t == "," and depth == 0:
            commas += 1
    return "n"


class Structurer:
    def __init__(self, g: Graph, reserved: frozenset, cells: dict, param_uses: dict, tied=frozenset()):
        self.g, self.reserved, self.cells, self.param_uses, self.tied = g, reserved, cells, param_uses, tied
        self.gp = g.param_by_name()
        self.symbols = {s for v in g.inputs for d in v.type.shape if isinstance(d, Dim) for s in d.symbols()}
        self.loose: set = set()
        self.per_node = param_keys(g, self.loose, tied)
        self.defs: dict = {}
        self.order: list[BlockDef] = []
        self.names: set = set()
        self._find_regions()

    # ------------------------------------------------------------ regions
    def _flat(self, r: Region):
        try:
            body = self._write(list(self.g.nodes[r.start:r.end + 1]), r, r.path)
        except DlcError:
            return None
        return shape_key(body.lines, r)

    def _find_regions(self):
        cores = []
        for c in core_regions(self.g, self.per_node):
            c = finish(self.g, c, 0, self.loose)
            k = self._flat(c)
            if k is not None and c.outputs:
                cores.append((k, c))
        by_key: dict = {}
        for k, c in cores:
            by_key.setdefault(k, []).append(c)
        self.key, self.groups = {}, {}
        for members in by_key.values():
            # the tail most instances have (a residual block's add and relu); the odd one
            # out (the last block, followed by the pooling) keeps at most that many
            ext = [tail_length(self.g, c, self.per_node, self.loose) for c in members]
            common = max(set(ext), key=lambda t: (ext.count(t), -t)) if len(members) > 1 else 0
            for c, e in zip(members, ext):
                tail = min(e, common)
                r = finish(self.g, c, tail, self.loose)
                k = self._flat(r) if tail else shape_key(self._write(
                    list(self.g.nodes[r.start:r.end + 1]), r, r.path).lines, r)
                if k is None or not r.outputs:
                    continue
                self.key[r.path] = k
                self.groups.setdefault(k, []).append(r)
        self.regions = sorted((r for rs in self.groups.values() for r in rs),
                              key=lambda r: (-(r.end - r.start), r.start))

    # ------------------------------------------------------------ selection
    def _repeats(self, r: Region, parent: Region | None) -> bool:
        group = self.groups[self.key[r.path]]
        if parent is None:
            return len(group) > 1
        inside = sum(1 for o in group if parent.contains(o))
        pgroup = self.groups[self.key[parent.path]]
        elsewhere = any(not any(p.contains(o) for p in pgroup) for o in group)
        return inside > 1 or elsewhere

    def select(self, parent: Region | None) -> list[Region]:
        chosen: list[Region] = []
        for r in self.regions:
            if parent is not None and not parent.contains(r):
                continue
            if any(c.overlaps(r) for c in chosen) or not self._repeats(r, parent):
                continue
            if self.block_def(self.key[r.path]) is not None:
                chosen.append(r)
        return sorted(chosen, key=lambda r: r.start)

    def items(self, start: int, end: int, parent: Region | None) -> list:
        chosen = {r.start: r for r in self.select(parent)}
        prefix = parent.path if parent is not None else ""
        out, i = [], start
        while i <= end:
            r = chosen.get(i)
            if r is None:
                out.append(self.g.nodes[i])
                i += 1
                continue
            d = self.block_def(self.key[r.path])
            rel = r.path[len(prefix) + 1:] if prefix else r.path
            params = {f"{rel}.{local}": gname for local, gname in d.mappings[r.path].items()}
            out.append(App(d.name, d.args[r.path], d.param_names, rel, r.inputs, r.outputs, params))
            i = r.end + 1
        return out

    # ------------------------------------------------------------ writing
    def _write(self, items: list, r: Region, prefix: str):
        names = _INPUT_NAMES + [f"x{k}" for k in range(3, len(r.inputs))]
        spec = BodySpec([], list(zip(r.inputs, names)), list(r.outputs), prefix=prefix, items=items,
                        graph_params=self.gp, cells=self.cells, param_uses=self.param_uses,
                        tied=self.tied)
        return write_body(spec, self.reserved)

    def block_def(self, key) -> BlockDef | None:
        if key in self.defs:
            return self.defs[key]
        self.defs[key] = None          # a block never contains itself
        group = sorted(self.groups[key], key=lambda r: r.start)
        try:
            bodies = [self._write(self.items(r.start, r.end, r), r, r.path) for r in group]
        except DlcError:
            return None
        d = self._make_def(group, bodies)
        self.defs[key] = d
        if d is not None:
            self.order.append(d)
        return d

    def _make_def(self, group: list, bodies: list) -> BlockDef | None:
        streams = [tokens(b.lines) for b in bodies]
        texts = [[m.group() for _, m in s] for s in streams]
        first = texts[0]
        if any(len(t) != len(first) or any(a != b and not (_is_num(a) and _is_num(b)) for a, b in zip(t, first))
               for t in texts):
            return None
        types = [[block_type_text(v.type) for v in r.inputs] for r in group]
        if any(t != types[0] for t in types):
            return None
        bound = {str(d) for v in group[0].inputs for d in v.type.shape if isinstance(d, Dim)}
        if any(t in self.symbols and t not in bound for t in first):
            return None
        holes = [k for k in range(len(first)) if _is_num(first[k]) and len({t[k] for t in texts}) > 1]
        params_of = {d.name: d.param_names for d in self.order}
        taken = set(first) | set(self.reserved)
        pnames, by_vector, slot = [], {}, {}
        for k in holes:
            vec = tuple(t[k] for t in texts)
            if vec not in by_vector:
                base = identifier(_role(first, k, params_of), "n")
                nm, j = base, 2
                while nm in taken:
                    nm, j = f"{base}{j}", j + 1
                taken.add(nm)
                by_vector[vec] = len(pnames)
                pnames.append(nm)
            slot[k] = by_vector[vec]
        name = self._block_name(group[0].path)
        vectors = {i: vec for vec, i in by_vector.items()}
        args = {r.path: [vectors[i][n] for i in range(len(pnames))] for n, r in enumerate(group)}
        lines = self._substitute(bodies[0].lines, streams[0], slot, pnames)
        ptypes = ["float" if any(not re.fullmatch(r"\d+", v) for v in vectors[i]) else "int"
                  for i in range(len(pnames))]
        names = _INPUT_NAMES + [f"x{k}" for k in range(3, len(group[0].inputs))]
        sig = ", ".join(f"{n}: {t}" for n, t in zip(names, types[0]))
        head = [f"# {len(group)} instances: {', '.join(r.path for r in group[:4])}"
                f"{', ...' if len(group) > 4 else ''}; types as in {group[0].path}",
                f"block {name}({', '.join(f'{p}: {t}' for p, t in zip(pnames, ptypes))})({sig}) {{"]
        mappings = {r.path: b.params for r, b in zip(group, bodies)}
        return BlockDef(name, pnames, head + lines + ["}", ""], args, mappings, bodies[0].fallback,
                        bodies[0].layer_calls, bodies[0].loops)

    @staticmethod
    def _substitute(lines, stream, slot, pnames) -> list[str]:
        out = list(lines)
        for k in sorted(slot, reverse=True):
            i, m = stream[k]
            out[i] = out[i][:m.start()] + pnames[slot[k]] + out[i][m.end():]
        return out

    def _block_name(self, path: str) -> str:
        parts = [p for p in path.split(".") if not p.isdigit()]
        base = re.sub(r"\d+$", "", parts[-1] if parts else "block").strip("_") or "block"
        base = "".join(w[:1].upper() + w[1:] for w in re.split(r"_+", identifier(base, "b")))
        if path.split(".")[-1].isdigit() and len(parts) and parts[-1] == path.split(".")[-2]:
            base += "Block"
        nm, j = base, 2
        while nm in self.names or nm in self.reserved:
            nm, j = f"{base}{j}", j + 1
        self.names.add(nm)
        return nm


def structure(g: Graph, spec: BodySpec, reserved: frozenset):
    """The model body with repeated instances as block applications, and the block definitions
    (those the model applies, directly or inside other blocks, innermost first)."""
    s = Structurer(g, reserved, spec.cells, spec.param_uses, spec.tied)
    spec.items = s.items(0, len(g.nodes) - 1, None)
    used, todo = set(), [it.block for it in spec.items if isinstance(it, App)]
    by_name = {d.name: d for d in s.order}
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        text = "\n".join(by_name[name].lines)
        todo += [other for other in by_name if other not in used and re.search(rf"\b{re.escape(other)}\(", text)]
    defs = [d for d in s.order if d.name in used]
    lines = [ln for d in defs for ln in d.lines]
    stats = {"blocks": len(defs), "fallback": sum(d.fallback for d in defs),
             "layer_calls": sum(d.layer_calls for d in defs), "loops": sum(d.loops for d in defs)}
    return spec, lines, stats
