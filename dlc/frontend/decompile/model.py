"""The whole spec: the model's signature, example sizes, blocks and body."""
from __future__ import annotations

from ...compiler.ir import Graph
from ...errors import DlcValueError
from .text import identifier, reserved_names
from .writer import BodySpec, write_body


def _input_names(g: Graph, reserved) -> list[str]:
    out, taken = [], set()
    for v in g.inputs:
        base, k = identifier(v.name or "input", "input"), 1
        nm = base
        while nm in reserved or nm in taken:
            nm, k = f"{base}_{k}", k + 1
        taken.add(nm)
        out.append(nm)
    return out


def _leftover_params(g: Graph, mapped: set, taken: set) -> tuple[list[str], dict]:
    """Declarations for parameters no statement reads (kept so the weights still load)."""
    lines, extra = [], {}
    for p in g.params:
        if p.name in mapped:
            continue
        base, k = identifier(p.name, "p"), 1
        nm = base
        while nm in taken:
            nm, k = f"{base}_{k}", k + 1
        taken.add(nm)
        extra[nm] = p.name
        lines.append(f"    {'buffer' if p.kind == 'buffer' else 'param'} {nm}: {p.type}")
    return lines, extra


def write_model(g: Graph, name: str):
    if not g.outputs:
        raise DlcValueError(f"decompile: the graph {g.name} has no outputs", g.span)
    if g.mode != "eval":
        raise DlcValueError(f"decompile: the graph {g.name} is in {g.mode} mode", g.span,
                            "decompile the eval-mode graph: a spec's train behaviour follows from its layers")
    model = identifier(name, "Net")
    model = model[0].upper() + model[1:]
    symbols = sorted({s for v in g.inputs for d in v.type.shape if hasattr(d, "symbols") for s in d.symbols()})
    reserved = reserved_names() | set(symbols) | {model}
    in_names = _input_names(g, reserved)
    from .body import count_uses
    params = {p.id for p in g.params}
    from .layers import tied_params
    uses = count_uses(g.nodes, g.outputs)
    param_uses = {k: n for k, n in uses.items() if k in params}
    spec = BodySpec(list(g.nodes), list(zip(g.inputs, in_names)), list(g.outputs),
                    out_names=list(g.output_names) or None, graph_params=g.param_by_name(),
                    param_uses=param_uses, tied=tied_params(g.nodes, uses))
    from .blocks import structure
    spec, block_lines, bstats = structure(g, spec, reserved)
    body = write_body(spec, reserved)
    mapping = dict(body.params)          # spec name -> graph name
    taken = set(body.names.values()) | reserved
    left_lines, extra = _leftover_params(g, set(mapping.values()), taken)
    mapping.update(extra)
    # a graph weight several layer calls read (an exporter's deduplicated ones and zeros) is untied:
    # its first reader takes its name, the others are copies
    names, copies = {}, {}
    for spec_name, gname in mapping.items():
        if gname in names:
            copies[spec_name] = gname
        else:
            names[gname] = spec_name

    sig = ", ".join(f"{nm}: {v.type}" for v, nm in zip(g.inputs, in_names))
    outs = ", ".join(str(v.type) for v in g.outputs)
    lines = [f"# {model}: decompiled by dlc from its {g.mode}-mode IR graph", ""]
    body_text = "\n".join(block_lines + body.lines)
    for cell in spec.cells.get("__defs__", []):
        import re
        if re.search(rf"\b{cell[1].split()[1].split('(')[0]}\b", body_text):
            lines += cell
    lines += block_lines
    lines.append(f"model {model}({sig}) {{  # -> {outs}" if len(g.outputs) > 1 else
                 f"model {model}({sig}) {{  # -> {outs}")
    examples = [f"{k} = {v}" for k, v in g.dims.items() if v is not None and k in symbols]
    if examples:
        lines.append(f"    example {', '.join(examples)}")
    lines += left_lines + body.lines
    lines.append("}")
    fallback = body.fallback + len(left_lines) + bstats.get("fallback", 0)
    stats = {"fallback": fallback, "layer_calls": body.layer_calls + bstats.get("layer_calls", 0),
             "blocks": bstats.get("blocks", 0), "loops": body.loops + bstats.get("loops", 0),
             "statements": sum(1 for ln in lines if ln.strip() and not ln.strip().startswith("#"))}
    stats["untied"] = len(copies)
    return "\n".join(lines) + "\n", {p.name: names[p.name] for p in g.params}, copies, stats
