"""Any dlc IR graph as a standalone Python function that uses only torch.

    src = generate_function(graph)            # the source text
    fn = compile_function(graph)              # the function itself
    outputs, updates = fn(image, params, seed=0)

The generated function takes the graph's inputs positionally (in
`graph.inputs` order, named after them), the parameters and buffers as a
dict `params` keyed by their dlc names, and a keyword-only run `seed` for the
random ops.  It returns a tuple of the graph's outputs (in order) and a dict
of state updates (`graph.state_updates`, keyed by buffer name).

The body is straight-line code, one statement per node, each with a
``# file.dln:line`` comment.  Variables are named after the `.dln` names the
elaborator recorded (`Value.name`) or after the op (``conv2d_1``); a scan
node becomes a Python ``for`` loop over its axis with the body inlined and
the per-step outputs stacked with ``torch.stack``; a `fused` region becomes
PyTorch's fused call for its kind, or its body with the epilogue done in
place (`lowering_fused`).  Symbolic dimensions used by attributes are read
from the inputs' shapes (``N = image.shape[0]``).

Nothing from the model becomes code unchecked: names are reduced to
``[A-Za-z0-9_]`` identifiers (never a keyword, builtin or one of the
generator's own names), strings are rendered as escaped literals, and source
locations in comments are stripped to a safe character set.
"""
from __future__ import annotations

import builtins
import keyword
import linecache
import re
from itertools import count

from ...compiler.decompose import bind_inputs, decomposition
from ...compiler.dims import Dim
from ...compiler.ir import Graph, Node, Value
from .lowering import HELPERS, LOWERING, helpers_used, string_literal
from .lowering_fused import emit_fused

__all__ = ["compile_function", "generate_function", "sanitize"]

# names the generated code itself uses; helpers all start with "_", which
# sanitised names never do
_RESERVED = frozenset({"torch", "F", "math", "params", "seed", "device"})
_BUILTINS = frozenset(dir(builtins))
_OPERAND_FREE = frozenset({"full", "arange", "sinusoidal_positions", "randn", "uniform"})
_MAX_NAME = 48
_WIDTH = 100      # longer signatures and returns are written one item per line


def sanitize(text: str, fallback: str = "v") -> str:
    """`text` as a plain identifier: runs of characters outside [A-Za-z0-9]
    become one "_", leading underscores go, a leading digit gets a "v_" prefix.
    (Uniqueness and clashes with keywords/builtins are the namer's job.)"""
    s = re.sub(r"[^A-Za-z0-9]+", "_", str(text)).lstrip("_")[:_MAX_NAME].rstrip("_") or fallback
    if s[0].isdigit():
        s = "v_" + s
    return s


class _Namer:
    """Unique, valid, non-reserved variable names."""

    def __init__(self, reserved=()):
        self.used: set[str] = set(_RESERVED) | set(reserved)

    def fresh(self, hint: str, fallback: str = "v") -> str:
        """A new name from `hint`; a clash (with a keyword, a builtin, the generator's
        own names or an earlier variable) takes a numeric suffix: sum -> sum_1.
        (Not a trailing "_", which in PyTorch reads as an in-place op.)"""
        base = sanitize(hint, fallback)
        name, i = base, 1
        while name in self.used or keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in _BUILTINS:
            name = f"{base}_{i}"
            i += 1
        self.used.add(name)
        return name


def _comment_text(text: str, limit: int = 120) -> str:
    """Text safe inside a comment: printable ASCII of a restricted set, no newlines."""
    out = "".join(c if (c.isascii() and (c.isalnum() or c in "_.:/+@-= ")) else "?" for c in str(text))
    return out[:limit]


def _location(node: Node) -> str:
    sp = node.span
    if sp is None:
        return ""
    return f"  # {_comment_text(sp.file)}:{int(sp.line)}"


def _symbols(value, out: list[str]) -> None:
    if isinstance(value, Dim):
        for s in sorted(value.symbols()):
            if s not in out:
                out.append(s)
    elif isinstance(value, (tuple, list)):
        for v in value:
            _symbols(v, out)


class _Gen:
    def __init__(self, graph: Graph, name: str, dims: dict | None):
        self.graph = graph
        self.namer = _Namer()
        self.fn_name = self.namer.fresh(name, "forward_fn")
        self.names: dict[int, str] = {}
        self.dim_src: dict[str, str] = {}
        self.given_dims = dict(dims or {})
        # unnamed results the graph returns are named after the output / buffer they become
        self.hints: dict[int, str] = {}
        for nm, v in list(zip(graph.output_names, graph.outputs)) + list(graph.state_updates.items()):
            if v.kind == "node" and not v.name and v.id not in self.hints:
                self.hints[v.id] = nm

    # naming -----------------------------------------------------------------
    def name_of(self, v: Value | None) -> str | None:
        if v is None:
            return None
        try:
            return self.names[v.id]
        except KeyError:
            raise ValueError(f"value {v!r} is used before it is defined") from None

    def define(self, v: Value, hint: str) -> str:
        n = self.namer.fresh(v.name or self.hints.get(v.id) or hint, hint)
        self.names[v.id] = n
        return n

    # the function -----------------------------------------------------------------
    def generate(self) -> str:
        g = self.graph
        args = [self.define(v, "input") for v in g.inputs]
        body: list[str] = []
        if any(n.op.name in _OPERAND_FREE or _decomposed(n) for n in g.walk()):
            body.append(f"device = {self._device_source(args)}")
        for p in g.params:
            body.append(f"{self.define(p, 'param')} = params[{string_literal(p.name)}]")
        body += self._bind_dims()
        self._emit_nodes(g, body, "")
        outs = [self.name_of(v) for v in g.outputs]
        updates = [f"{string_literal(k)}: {self.name_of(v)}" for k, v in g.state_updates.items()]
        ret = f"return ({', '.join(outs)}{',' if len(outs) == 1 else ''}), {{{', '.join(updates)}}}"
        if len(ret) > _WIDTH:
            ret = ("return (\n" + "".join(f"    {o},\n" for o in outs) + "), {\n"
                   + "".join(f"    {u},\n" for u in updates) + "}")
        body.append(ret)

        title = sanitize(g.name, "graph")
        mode = "train" if g.mode == "train" else "eval"
        sig = ", ".join(args + ["params", "*", "seed=0"])
        head = f"def {self.fn_name}({sig}):"
        if len(head) > _WIDTH:
            head = f"def {self.fn_name}(\n" + "".join(f"    {a},\n" for a in args + ["params", "*", "seed=0"]) + "):"
        lines = [*head.split("\n"),
                 f'    """{title} ({mode} mode) as PyTorch, generated by dlc.',
                 "",
                 "    Returns (outputs, state updates by buffer name).",
                 '    """']
        lines += ["    " + ln if ln else "" for ln in "\n".join(body).split("\n")]
        fn_src = "\n".join(lines) + "\n"
        prelude = "".join(HELPERS[h] + "\n\n" for h in helpers_used(fn_src))
        return prelude + fn_src

    def _device_source(self, args: list[str]) -> str:
        if args:
            return f"{args[0]}.device"
        if self.graph.params:
            return f"params[{string_literal(self.graph.params[0].name)}].device"
        return 'torch.device("cpu")'

    def _bind_dims(self) -> list[str]:
        """``N = image.shape[0]`` for each symbol an attribute uses."""
        syms: list[str] = []
        for n in self.graph.walk():
            for v in n.attrs.values():
                _symbols(v, syms)
        lines = []
        for s in syms:
            src = self._find_dim(s)
            var = self.namer.fresh(s, "dim")
            lines.append(f"{var} = {src}")
            self.dim_src[s] = var
        return lines

    def _find_dim(self, sym: str) -> str:
        target = Dim.symbol(sym)
        for v in list(self.graph.inputs) + list(self.graph.params):
            for i, d in enumerate(v.type.shape):
                if isinstance(d, Dim) and d == target:
                    return f"{self.name_of(v)}.shape[{i}]"
        if sym in self.given_dims:
            value = self.given_dims[sym]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"dims[{sym!r}] must be an int, got {value!r}")
            return repr(value)
        raise ValueError(f"cannot compute the symbolic dimension {sym!r}: no input has it as a whole axis; "
                         f"pass its size as dims={{{sym!r}: ...}}")

    # nodes ---------------------------------------------------------------------
    def _emit_nodes(self, g: Graph, out: list[str], indent: str) -> None:
        for node in g.nodes:
            if node.op.name == "scan":
                self._emit_scan(node, out, indent)
                continue
            if node.op.name == "fused":
                emit_fused(self, node, out, indent, _location(node))
                continue
            if _decomposed(node):
                self._emit_decomposition(node, out, indent)
                continue
            args = [self.name_of(v) for v in node.inputs]
            types = [v.type if v is not None else None for v in node.inputs]
            outs = [self.define(o, node.op.name) for o in node.outputs]
            try:
                lower = LOWERING[node.op.name]
            except KeyError:
                raise ValueError(f"no PyTorch lowering for op {node.op.name!r}") from None
            src = lower(args, node.attrs, outs, dims=self.dim_src, in_types=types)
            stmts = src.split("\n")
            stmts[0] += _location(node)
            out += [indent + s for s in stmts]

    def _emit_decomposition(self, node: Node, out: list[str], indent: str) -> None:
        """An op without a lowering: its decomposition's statements, inline."""
        sub = decomposition(node)
        self.names.update(bind_inputs(sub, node, self.name_of))
        for o, so in zip(node.outputs, sub.outputs):   # results keep the names the graph gives them
            self.hints.setdefault(so.id, o.name or self.hints.get(o.id) or node.op.name)
        self._emit_nodes(sub, out, indent)
        for o, so in zip(node.outputs, sub.outputs):
            self.names[o.id] = self.name_of(so)

    def _emit_scan(self, node: Node, out: list[str], indent: str) -> None:
        a = node.attrs
        nc, axis, reverse = int(a["num_carry"]), int(a["axis"]), bool(a["reverse"])
        body = node.body
        init = [self.name_of(v) for v in node.inputs[:nc]]
        seqs = [self.name_of(v) for v in node.inputs[nc:]]
        carries = [self.define(v, "carry") for v in body.inputs[:nc]]
        xs = [self.define(v, "x_t") for v in body.inputs[nc:]]
        results = node.outputs
        result_names = [self.namer.fresh(v.name or self.hints.get(v.id) or "scan") for v in results]
        steps = [self.namer.fresh(f"{nm}_steps") for nm in result_names[nc:]]
        t = self.namer.fresh("t")
        loc = _location(node)
        first = True

        def emit(line, tag=True):
            nonlocal first
            out.append(indent + line + (loc if first and tag else ""))
            first = False

        if nc:
            emit(f"{', '.join(carries)} = {', '.join(init)}")
        for s in steps:
            emit(f"{s} = []")
        length = f"{seqs[0]}.shape[{axis}]"
        rng = f"reversed(range({length}))" if reverse else f"range({length})"
        emit(f"for {t} in {rng}:")
        inner = indent + "    "
        for x, s in zip(xs, seqs):
            pick = f"{s}[{':, ' * axis}{t}]" if axis >= 0 else f"{s}.select({axis}, {t})"
            out.append(f"{inner}{x} = {pick}")
        self._emit_nodes(body, out, inner)
        new = [self.name_of(v) for v in body.outputs]
        # per-step outputs first: one may be a carry variable itself (the body
        # returns its incoming carry, as the recompute scan of a backward does),
        # and it must be the value from before this step's carry update
        for s, y in zip(steps, new[nc:]):
            out.append(f"{inner}{s}.append({y})")
        if nc:
            out.append(f"{inner}{', '.join(carries)} = {', '.join(new[:nc])}")
        if reverse:
            for s in steps:
                out.append(f"{indent}{s}.reverse()")
        if nc:
            out.append(f"{indent}{', '.join(result_names[:nc])} = {', '.join(carries)}")
        for nm, s in zip(result_names[nc:], steps):
            out.append(f"{indent}{nm} = torch.stack({s}, dim={axis})")
        for v, nm in zip(results, result_names):
            self.names[v.id] = nm


def _decomposed(node: Node) -> bool:
    return node.op.name not in LOWERING and node.op.decompose is not None


def generate_function(graph: Graph, name: str = "forward_fn", *, dims: dict[str, int] | None = None) -> str:
    """Python source of ``def <name>(<inputs>, params, *, seed=0)`` computing `graph` with torch.

    `dims` gives sizes for symbolic dimensions that no input reveals as a whole
    axis (those that do are always read from the inputs at run time).  The
    source starts with the helper functions it uses (``_lstm``, ``_dropout``...).
    """
    return _Gen(graph, name, dims).generate()


def compile_function(graph: Graph, name: str = "forward_fn", *, dims: dict[str, int] | None = None):
    """`generate_function`, executed in a fresh namespace holding only torch, F
    and math; returns the function.  It carries `source` (the text),
    `input_names` (dlc names of its positional inputs, in order) and
    `output_names`."""
    import math

    import torch
    import torch.nn.functional as F

    gen = _Gen(graph, name, dims)
    src = gen.generate()
    fn_name = gen.fn_name
    filename = f"<dlc-torch {next(_compiled)}: {sanitize(graph.name, 'graph')}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)  # readable tracebacks
    namespace = {"torch": torch, "F": F, "math": math, "__name__": "dlc_generated"}
    exec(compile(src, filename, "exec"), namespace)  # noqa: S102 (the point: nothing else is in scope)
    fn = namespace[fn_name]
    fn.source = src
    fn.input_names = [v.name for v in graph.inputs]
    fn.output_names = list(graph.output_names)
    return fn


_compiled = count()
