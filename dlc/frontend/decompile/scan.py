"""A `scan` node as `ys, state = scan(Cell, xs, init, axis=..., name=...)`,
its body written as the block `Cell` (the cell's weights declared in it, so
their names sit under the scan's name as the frontend makes them)."""
from __future__ import annotations

from ...compiler.ir import Node, free_values
from .body import Stmt
from .exprs import Call, TupleOf
from .ops import unsupported
from .text import block_type_text, lit


def _common_path(names: list[str]) -> str:
    parents = [n.rsplit(".", 1)[0].split(".") if "." in n else [] for n in names]
    if not parents:
        return ""
    out = []
    for parts in zip(*parents):
        if len(set(parts)) != 1:
            break
        out.append(parts[0])
    return ".".join(out)


def _pattern(n_carry: int, n_ys: int) -> tuple[str, str]:
    """(lhs of the scan statement, the cell's return) over [carries..., ys...]."""
    ys = [f"{{{n_carry + k}}}" for k in range(n_ys)]
    cs = [f"{{{k}}}" for k in range(n_carry)]
    y = ys[0] if n_ys == 1 else "(" + ", ".join(ys) + ")"
    c = cs[0] if n_carry == 1 else "(" + ", ".join(cs) + ")"
    return f"{y}, {c}", f"{y}, {c}"


def scan_stmt(node: Node, spec, reserved) -> Stmt:
    from .writer import BodySpec, write_body
    body = node.body
    caps = free_values(body)
    if any(v.kind not in ("param", "buffer") for v in caps):
        raise unsupported(node, "whose body reads tensors of the enclosing graph other than weights "
                          "(a scan cell sees only its step and state)")
    nc = node.attrs["num_carry"]
    carries, seqs = body.inputs[:nc], body.inputs[nc:]
    path = _common_path([v.name for v in caps])
    inputs = [(c, "state" if nc == 1 else f"h{k}") for k, c in enumerate(carries)]
    inputs += [(x, "x" if len(seqs) == 1 else f"x{k}") for k, x in enumerate(seqs)]
    lhs, ret = _pattern(nc, len(body.outputs) - nc)
    cell = BodySpec(list(body.nodes), inputs, list(body.outputs), prefix=path, graph_params=spec.graph_params,
                    cells=spec.cells, return_pattern=ret, param_uses=spec.param_uses,
                    tied=spec.tied)
    text = write_body(cell, reserved)
    x_decl = ("x: " + block_type_text(seqs[0].type)) if len(seqs) == 1 else \
        "xs: (" + ", ".join(block_type_text(x.type) for x in seqs) + ")"
    s_decl = ("state: " + block_type_text(carries[0].type)) if nc == 1 else \
        "state: (" + ", ".join(block_type_text(c.type) for c in carries) + ")"
    unpack = []
    if nc > 1:
        unpack.append("    " + ", ".join(nm for _, nm in inputs[:nc]) + " = state")
    if len(seqs) > 1:
        unpack.append("    " + ", ".join(nm for _, nm in inputs[nc:]) + " = xs")
    body_lines = list(text.lines)
    decls = [ln for ln in body_lines if ln.lstrip().startswith(("param ", "buffer "))]
    rest = body_lines[len(decls):]
    key = "\n".join(body_lines) + x_decl + s_decl
    name = spec.cells.get(key)
    if name is None:
        base, k = "Cell", 2
        name = base
        while name in spec.cells.values() or name in reserved:
            name, k = f"{base}{k}", k + 1
        spec.cells[key] = name
        spec.cells.setdefault("__defs__", []).append(
            ["# the cell of a scan: (step, state) -> (output, new state)",
             f"block {name}()({x_decl}, {s_decl}) {{"] + decls + unpack + rest + ["}", ""])
    rel = path[len(spec.prefix) + 1:] if spec.prefix and path.startswith(spec.prefix + ".") else path
    if not rel and caps:
        # weights with no common path: an explicit name, so their spec names do not depend on the statement
        # (one name per scan node, kept across the bodies that write it)
        names = spec.cells.setdefault("__scan_names__", {})
        if id(node) not in names:
            rel, k = "cell", 1
            while rel in names.values():
                rel, k = f"cell_{k}", k + 1
            names[id(node)] = rel
        rel = names[id(node)]
    xs = node.inputs[nc:]
    init = node.inputs[:nc]
    args = [f"{name}()", xs[0] if len(xs) == 1 else TupleOf(list(xs)), init[0] if nc == 1 else TupleOf(list(init))]
    kw = []
    if node.attrs["axis"] != 0:
        kw.append(("axis", str(node.attrs["axis"])))
    if node.attrs["reverse"]:
        kw.append(("reverse", "true"))
    if rel:
        kw.append(("name", lit(rel)))
    params = {(f"{rel}.{local}" if rel else local): g for local, g in text.params.items()}
    st = Stmt([node], [Call("scan", args, kw)], list(node.outputs), pattern=lhs, params=params,
              fallback=text.fallback > 0)
    st.hints = [f"h{k}" if nc > 1 else "state" for k in range(nc)] + ["ys"] * (len(node.outputs) - nc)
    return st
