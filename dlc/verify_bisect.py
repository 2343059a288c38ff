"""Bisection for `dlc verify`: the first IR node whose output diverges, and a reproducer.

Every node result of the model's graph becomes a graph output; the graph runs
once on the failing backend (in the model's dtype) and once on the NumPy
reference (float64) with the same inputs and weights, and the first node in
topological order whose result leaves the tolerance is the culprit (all its
operands, computed earlier, were within it).  One run each is cheaper than a
binary search: the search would compile the graph log2(n) times, and a TVM
compile costs more than the extra outputs.

The -O0 graph is tried first: its nodes are the `.dln` expressions one to one.
When it agrees everywhere (the fault is in an optimised form: a fused region,
a folded constant) the failing level's graph is bisected instead; its nodes
carry the spans of the nodes they replaced.  Only top-level nodes are
compared: a scan's or fused region's body is reported as the whole node.

The reproducer is that node alone: a `.dln` model whose inputs are the node's
operands (parameters included), and a `.npz` of the operand values the
reference computed, which `dlc verify repro.dln` loads (a `.npz` beside the
spec with the same stem).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .compiler.types import DType
from .errors import DlcError
from .runtime.atomic import atomic_write
from .verify_core import Divergence, Row, as_f64, compare, tolerance


def _expose_all(g) -> list:
    """Make every top-level node result an output of `g`; the nodes, in order."""
    outs, names, nodes = [], [], []
    for i, n in enumerate(g.nodes):
        for j, v in enumerate(n.outputs):
            outs.append(v)
            names.append(f"n{i}.{j}")
        nodes.append(n)
    g.outputs, g.output_names, g.state_updates = outs, names, {}
    return nodes


def _graph(model, level: int, backend: str, env: dict):
    g = model._elaborate("eval", env)
    if level > 0:
        g = model.optimize(level=level).optimized(g, backend, bind=env)
    return g


def _run_all(model, level, backend, run_on, env, inputs, weights, seed, f64: bool):
    """Every node's value of the -O`level` graph prepared for `backend`, run on `run_on`
    (float64 inputs and weights with `f64`)."""
    from .backends import get_backend
    g = _graph(model, level, backend, env)
    nodes = _expose_all(g)
    feed, w = (as_f64(inputs), as_f64(weights)) if f64 else (inputs, weights)
    outs, _ = get_backend(run_on).compile(g, bind=env).run(feed, w, seed)
    return g, nodes, outs


def first_divergence(model, backend: str, level: int, dtype: str, inputs: dict, weights: dict, env: dict,
                     seed: int):
    """(graph, node index, (max abs, max rel), reference values) of the first diverging node, or None."""
    # the same graph on the NumPy reference in float64, and on the backend in the dtype verify ran it
    g, nodes, ref = _run_all(model, level, backend, "numpy", env, inputs, weights, seed, True)
    _, _, got = _run_all(model, level, backend, backend, env, inputs, weights, seed, dtype == "float64")
    for i, n in enumerate(nodes):
        keys = [f"n{i}.{j}" for j in range(len(n.outputs))]
        err_abs, err_rel, _, ok = compare({k: ref[k] for k in keys}, got, dtype, "forward")
        if not ok:
            return g, i, (err_abs, err_rel), ref
    return None


def bisect_failure(model, row: Row, inputs: dict, weights: dict, bind: dict, seed: int,
                   repro_dir: str | None) -> Divergence | None:
    """Bisect the failing `row`'s backend: at -O0 first, then at the row's level.  A row
    that failed with an error (a pass or a compile that raised) has its message, not a node."""
    if row.error is not None:
        return None
    env = {**{k: v for k, v in model._elaborate("eval", bind).dims.items() if v is not None}, **bind}
    levels = [0] if row.level == 0 else [0, row.level]
    for level in levels:
        try:
            found = first_divergence(model, row.backend, level, row.dtype, inputs, weights, env, seed)
        except DlcError:
            continue
        if found is None:
            continue
        g, i, (err_abs, err_rel), ref = found
        node = g.nodes[i]
        rtol, atol = tolerance(row.dtype, "forward")
        d = Divergence(row.backend, row.level, node.op.name, str(node.span) if node.span else "?",
                       caret(node), err_abs, err_rel, rtol, atol, level)
        if repro_dir is not None:
            try:
                d.repro, d.repro_inputs = write_repro(g, node, ref, inputs, weights, row, Path(repro_dir))
            except DlcError as e:
                d.repro_note = e.message
        return d
    return None


def caret(node) -> str:
    """The node's `.dln` line with a caret under it, as `DlcError.render` prints."""
    e = DlcError(f"{node.op.name} diverges here", node.span)
    return e.render()


def _literal(key: str, v) -> str:
    if key == "dtype" and isinstance(v, str):
        return DType.parse(v).short
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, float):
        return repr(float(v)) if np.isfinite(v) else ("1e309" if v > 0 else "-1e309")
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_literal("", x) for x in v) + "]"
    return str(v)


# registry attribute -> the keyword of its hand-written `.dln` builtin, where they differ
_ALIASES = {"kernel_size": "kernel", "is_causal": "causal", "output_size": "size", "attn_mask": "mask"}
_OPERATORS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "eq": "==", "ne": "!=", "lt": "<", "le": "<=",
              "gt": ">", "ge": ">=", "logical_and": "and", "logical_or": "or"}


def _call(node, names: list[str]) -> str:
    """The `.dln` expression computing `node` from operands called `names`."""
    import inspect
    from .frontend.builtins import BUILTINS
    op = node.op
    if op.name in _OPERATORS:
        return f"{names[0]} {_OPERATORS[op.name]} {names[1]}"
    if op.name in ("neg", "logical_not"):
        return f"-{names[0]}" if op.name == "neg" else f"not {names[0]}"
    b = BUILTINS.get(op.name)
    if b is None or b.kind != "op" or node.body is not None:
        raise DlcError(f"no single-op reproducer for a {op.name} node (it is written as a layer or made by a pass)",
                       node.span, "bisect the failing backend by hand with `dlc ir` and `dlc run`")
    keywords = set(inspect.signature(b.fn).parameters)
    args = ["none" if v is None else nm for nm, v in zip(names, node.inputs)]
    for k, v in node.attrs.items():
        key = k if k in keywords else _ALIASES.get(k)
        if key in keywords:
            args.append(f"{key}={_literal(k, v)}")
        elif v != op.attrs.get(k):
            raise DlcError(f"no single-op reproducer for {op.name} with {k}={v!r} (the .dln builtin has no "
                           f"such keyword)", node.span)
    return f"{op.name}({', '.join(args)})"


def repro_text(node, names: list[str], row: Row) -> str:
    params = ", ".join(f"{n}: {v.type}" for n, v in zip(names, node.inputs) if v is not None)
    results = ", ".join(f"y{j}" for j in range(len(node.outputs)))
    return (f"# dlc verify reproducer: {node.op.name} at {node.span}, {row.backend} -O{row.level} ({row.what})\n"
            f"# its operands are the model's inputs; their values are in the .npz beside this file\n"
            f"model Repro({params}) {{\n"
            f"    {results} = {_call(node, names)}\n"
            f"    return {results}\n"
            f"}}\n")


def write_repro(g, node, ref: dict, inputs: dict, weights: dict, row: Row, out: Path) -> tuple[str, str]:
    """Write `repro.dln` and `repro.npz` under `out` (operands in their graph dtype)."""
    index = {v.id: f"n{k}.{j}" for k, n in enumerate(g.nodes) for j, v in enumerate(n.outputs)}
    names, arrays = [], {}
    for k, v in enumerate(node.inputs):
        nm = f"x{k}"
        names.append(nm)
        if v is None:
            continue
        if v.id in index:
            val = ref[index[v.id]]
        elif v.kind == "input":
            val = inputs[v.name]
        else:
            val = weights[v.name]
        arrays[nm] = np.asarray(val).astype(v.type.dtype.numpy_name if v.type.dtype.numpy_name != "bfloat16"
                                            else "float32")
    text = repro_text(node, names, row)
    out.mkdir(parents=True, exist_ok=True)
    spec, npz = out / "repro.dln", out / "repro.npz"
    atomic_write(spec, text.encode())
    import io
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(npz, buf.getvalue())
    return str(spec), str(npz)
