"""The generated module's forward method: funcgen's generator with layer calls
and mode-generic ops (`_ForwardGen`), and `_tidy`, which drops what the
straight-line code computes but never reads."""
from __future__ import annotations

import re
from types import SimpleNamespace

from ...compiler.ir import Graph, Node, Value
from .funcgen import _comment_text, _Gen, _location, _Namer, sanitize
from .lowering import render, torch_dtype
from .modgen_attention import attention_source, find_attention
from .modgen_free import free_dead
from .modgen_inplace import InPlace
from .modgen_layers import _graphs, _Layer
from .modgen_names import _last, _MHA_PROJ, _parent, _Paths, _RESERVED_GLOBALS

_RANDOM = frozenset({"dropout", "randn", "uniform"})


class _ForwardGen(_Gen):
    """funcgen's function generator writing a `forward(self, ...)` method.

    Parameters are read from the module (``self.fc.weight``), mapped layers
    are called as modules, dropout follows ``self.training`` and random ops
    use torch's global generator; everything else goes through funcgen."""

    def __init__(self, graph: Graph, cls_name: str, paths: _Paths, plans: list[_Layer], param_src: dict,
                 layer_names: set, dims: dict | None):
        super().__init__(graph, "forward", dims)
        self.namer = _Namer(reserved=_RESERVED_GLOBALS | {cls_name})
        self.fn_name = "forward"
        self.paths = paths
        self.param_src = param_src
        self.layer_names = layer_names
        self.anchor: dict[int, _Layer] = {}
        self.skip: set[int] = set()
        for plan in plans:
            self.anchor[id(plan.nodes[0])] = plan
            self.skip.update(id(n) for n in plan.nodes[1:])
        self.bound_names = {sanitize(v.name) for sub in _graphs(graph) for n in sub.nodes
                            for v in n.outputs if v.name}
        self.block: dict[str, str] = {}     # indent -> the block scope last commented there
        self.group_comments = True          # `# layer1.0` where the scope changes (the flat module)
        # batch norms written with F.batch_norm count their batches themselves
        # (`if self.training: ...num_batches_tracked.add_(1)`), not with the IR's add
        self.counters: dict[str, str] = {}
        for key, v in graph.state_updates.items():
            node = v.producer
            if not key.endswith(".num_batches_tracked") or node is None or id(node) in self.skip \
                    or id(node) in self.anchor or node.op.name != "add":
                continue
            self.counters[key[:-len(".num_batches_tracked")]] = param_src[key]
            self.skip.add(id(node))
            for u in node.inputs:
                if u is not None and u.producer is not None and u.producer.op.name == "full":
                    self.skip.add(id(u.producer))
        # attention written out (QK^T, scale, mask, softmax, dropout, .V): one SDPA call at its last matmul
        self.attention = find_attention(graph, set(self.anchor) | self.skip)
        self.inplace = InPlace(graph)          # activations and residual adds in place where autograd allows
        for chain in self.attention.values():
            self.skip.update(id(n) for n in chain.nodes[:-1])

    # naming ------------------------------------------------------------------
    def define_layer_output(self, v: Value) -> str:
        return self.define(v, self._hint_for(v))

    def _hint_for(self, v: Value) -> str:
        node = v.producer
        if v.name:
            return v.name
        if node is not None:
            scope = node.scope
            for name in (scope, _parent(scope)):
                if name in self.layer_names:
                    last = sanitize(_last(name))
                    # a layer's name, unless a .dln binding of that name follows (c1 = conv2d(..) |> tanh)
                    return last if not _last(name).isdigit() and last not in self.bound_names else node.op.name
        return "v"

    def _group(self, node: Node) -> str:
        s = node.scope
        if _parent(s) in self.layer_names and _last(s) in _MHA_PROJ:   # multihead_attention's projections
            s = _parent(s)
        return _parent(s) if s in self.layer_names else s

    def _comment_block(self, node: Node, out: list, indent: str) -> None:
        grp = self._group(node)
        if self.block.get(indent) == grp:
            return
        self.block[indent] = grp
        if grp:
            out.append(f"{indent}# {_comment_text(grp)}")

    # the method ----------------------------------------------------------------
    def generate_forward(self, free: bool = True) -> str:
        """The method's source; `free`: with `del` after each intermediate's last use
        (the flat module's memory behaviour; a block class's locals die on return)."""
        g = self.graph
        args = [self.define(v, "input") for v in g.inputs]
        for p in g.params:
            self.names[p.id] = self.param_src[p.name]
        body: list[str] = self._bind_dims()
        self._emit_nodes(g, body, "")
        if any(re.search(r"(?<![\w.])device(?!\w)", ln.partition("#")[0]) for ln in body):
            if args:
                body.insert(0, f"device = {args[0]}.device")
            elif g.params:
                body.insert(0, f"device = {self.param_src[g.params[0].name]}.device")
            else:
                body.insert(0, 'device = torch.device("cpu")')
        outs = [self.name_of(v) for v in g.outputs]
        body.append(f"return {', '.join(outs)}")
        sig = ", ".join(["self"] + args)
        lines = [f"def forward({sig}):"]
        lines += ["    " + ln if ln else "" for ln in "\n".join(body).split("\n")]
        src = _tidy("\n".join(lines) + "\n")
        return free_dead(src) if free else src

    def _emit_nodes(self, g, out: list, indent: str) -> None:
        for node in g.nodes:
            if id(node) in self.skip:
                continue
            plan = self.anchor.get(id(node))
            if self.group_comments and (plan is None or not plan.block):
                self._comment_block(node, out, indent)
            else:
                self.block[indent] = None
            if id(node) in self.attention:
                y = self.define(node.outputs[0], "attention")
                out.append(indent + attention_source(self, self.attention[id(node)], y) + _location(node))
            elif plan is not None:
                mod = self.paths.expr(plan.name)
                stmts = plan.call(self, mod)
                stmts[-1 if plan.block else 0] += _span_location(plan.record.span) if plan.block else _location(node)
                out += [indent + s for s in stmts]
                for n in plan.nodes:
                    self.inplace.made(n)
            elif node.op.name in _RANDOM:
                out.append(indent + self._random(node) + _location(node))
            elif node.op.name == "batch_norm" and node.attrs.get("layout", "NCHW") == "NCHW":
                out += [indent + s for s in self._batch_norm(node)]
            elif (stmt := self.inplace.statement(self, node)) is not None:
                out.append(indent + stmt + _location(node))
                self.inplace.made(node, in_place=True)
            else:
                super()._emit_nodes(SimpleNamespace(nodes=[node]), out, indent)
                self.inplace.made(node)

    def _random(self, node: Node) -> str:
        a = node.attrs
        if node.op.name == "dropout":
            x = self.name_of(node.inputs[0])
            y = self.define(node.outputs[0], "dropout")
            return f"{y} = F.dropout({x}, {render(float(a['p']))}, self.training)"
        shape = a["shape"]
        shape = tuple(shape) if isinstance(shape, (list, tuple)) else (shape,)
        size = render(shape, self.dim_src)
        tail = f"dtype={torch_dtype(a['dtype'])}, device=device"
        y = self.define(node.outputs[0], node.op.name)
        if node.op.name == "randn":
            return f"{y} = torch.randn({size}, {tail})"
        return f"{y} = torch.empty({size}, {tail}).uniform_({render(a['low'])}, {render(a['high'])})"

    def _batch_norm(self, node: Node) -> list[str]:
        """A batch norm that is not an nn.BatchNorm module: F.batch_norm with the
        module-generic training flag (it updates the running statistics in place,
        as nn.BatchNorm does)."""
        x, rm, rv, w, b = (list(node.inputs) + [None] * 5)[:5]
        a = node.attrs
        args = [self.name_of(x), self.name_of(rm) or "None", self.name_of(rv) or "None",
                self.name_of(w) or "None", self.name_of(b) or "None",
                # a batch norm told training=false (the functional form's flag) stays in eval in both modes
                "self.training" if a.get("training", True) else "False",
                render(float(a.get("momentum", 0.1) if a.get("momentum") is not None else 0.1)),
                render(float(a.get("eps", 1e-5)))]
        y = self.define(node.outputs[0], "batch_norm")
        lines = [f"{y} = F.batch_norm({', '.join(args)})" + _location(node)]
        prefix = rm.name[:-len(".running_mean")] if rm is not None and rm.name.endswith(".running_mean") else None
        if prefix in self.counters:
            lines += ["if self.training:", f"    {self.counters[prefix]}.add_(1)"]
        # the new statistics are the (updated in place) buffers themselves
        for o, src in zip(node.outputs[1:], (rm, rv)):
            self.names[o.id] = self.name_of(src) if src is not None else "None"
        return lines


def _span_location(span) -> str:
    return "" if span is None else f"  # {_comment_text(span.file)}:{int(span.line)}"


def _calls_self(expr) -> bool:
    import ast
    for node in ast.walk(expr):
        if isinstance(node, ast.Call):
            f = node.func
            while isinstance(f, (ast.Attribute, ast.Subscript)):
                f = f.value
            if isinstance(f, ast.Name) and f.id == "self":
                return True
    return False


def _tidy(src: str) -> str:
    """Drop what the straight-line code computes but never reads.

    Statements assigning only unread variables go (``hs = torch.stack(...)``
    of a scan whose stacked outputs nobody uses, an unused ``T = x.shape[1]``),
    lists that are only ever appended to go with their appends, and unread
    names in a tuple target become ``_`` (``y, _ = self.gru(x)``).  Repeated
    until nothing changes, so nothing unused is left for linters to flag."""
    import ast

    for _ in range(1000):
        tree = ast.parse(src)
        fn = tree.body[0]
        loads: dict[str, list] = {}
        parents: dict[int, ast.AST] = {}
        for node in ast.walk(fn):
            for child in ast.iter_child_nodes(node):
                parents[id(child)] = node
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                loads.setdefault(node.id, []).append(node)

        def only_appended(name: str, loads=loads, parents=parents) -> bool:
            for use in loads.get(name, []):
                attr = parents.get(id(use))
                call = parents.get(id(attr)) if attr is not None else None
                stmt = parents.get(id(call)) if call is not None else None
                if not (isinstance(attr, ast.Attribute) and attr.attr == "append"
                        and isinstance(call, ast.Call) and isinstance(stmt, ast.Expr)):
                    return False
            return True

        deletions: list[ast.stmt] = []
        renames: list[ast.Name] = []
        for block in [fn] + [n for n in ast.walk(fn) if isinstance(n, (ast.For, ast.If, ast.While))]:
            body = block.body
            doomed = []
            for stmt in body:
                if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                    t = stmt.targets[0]
                    if isinstance(t, ast.Name):
                        dead = t.id not in loads or (isinstance(stmt.value, ast.List) and not stmt.value.elts
                                                     and only_appended(t.id))
                        if dead and _calls_self(stmt.value):
                            if t.id != "_":  # a layer call may update state (batch norm): kept
                                renames.append(t)
                        elif dead:
                            doomed.append(stmt)
                    elif isinstance(t, ast.Tuple):
                        names = [n for n in ast.walk(t) if isinstance(n, ast.Name)]
                        unused = [n for n in names if n.id not in loads and n.id != "_"]
                        if unused and len(unused) == len(names) and not _calls_self(stmt.value):
                            doomed.append(stmt)
                        else:
                            renames += unused
                elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) \
                        and isinstance(stmt.value.func, ast.Attribute) and stmt.value.func.attr == "append" \
                        and isinstance(stmt.value.func.value, ast.Name):
                    target = stmt.value.func.value.id
                    inits = [s for s in ast.walk(fn) if isinstance(s, ast.Assign) and len(s.targets) == 1
                             and isinstance(s.targets[0], ast.Name) and s.targets[0].id == target]
                    if inits and all(isinstance(s.value, ast.List) and not s.value.elts for s in inits) \
                            and only_appended(target):
                        doomed.append(stmt)
            if len(doomed) == len(body) and block is not fn:
                doomed = doomed[:-1]  # a loop keeps a body
            deletions += doomed
        if not deletions and not renames:
            return src
        lines = src.split("\n")
        for n in sorted(renames, key=lambda n: (n.lineno, n.col_offset), reverse=True):
            ln = lines[n.lineno - 1]
            lines[n.lineno - 1] = ln[:n.col_offset] + "_" + ln[n.end_col_offset:]
        drop = set()
        for stmt in deletions:
            drop.update(range(stmt.lineno - 1, stmt.end_lineno))
        src = "\n".join(ln for i, ln in enumerate(lines) if i not in drop)
    return src
