"""The low-level fallback: one IR op as one `.dln` expression.

`WRITERS` is keyed by op name.  An op not in it whose builtin the registry
made (`builtins_ops.py`) is written as that builtin, operands then the
attributes that differ from their defaults; an op with neither (a layer op
whose parameters no layer call can own, a pass-made op) is a `DlcError`
naming the op and its `.dln` line.
"""
from __future__ import annotations

from ...compiler.ir import Node
from ...compiler.ops.registry import required
from ...errors import DlcValueError
from .exprs import Call, Index, Infix, Prefix
from .text import dim, dtype_name, lit

_REQUIRED = required()
INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "matmul": "@", "eq": "==", "ne": "!=",
         "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "logical_and": "and", "logical_or": "or"}
POOLS = {"max_pool2d": ("maxpool2d", 2), "avg_pool2d": ("avgpool2d", 2),
         "max_pool1d": ("maxpool1d", 1), "avg_pool1d": ("avgpool1d", 1)}


class Unsupported(DlcValueError):
    """An IR op (or op use) that no `.dln` statement can express."""


def unsupported(node: Node, why: str) -> Unsupported:
    return Unsupported(f"decompile: {node.op.name} {why}", node.span,
                       "this graph cannot be written as a .dln spec yet")


def _changed(node: Node, skip=()) -> list:
    """(attribute, literal) for each attribute that differs from the op's default."""
    out = []
    for k, default in node.op.attrs.items():
        v = node.attrs.get(k, default)
        if k in skip or k == "layout" and v == "NCHW":
            continue
        if default is _REQUIRED or v != default:
            out.append((k, lit(v)))
    return out


def generic(node: Node, fn: str | None = None) -> Call:
    """`op(operands..., attr=value...)`: the builtin the registry makes."""
    args = list(node.inputs)
    while args and args[-1] is None:
        args.pop()
    return Call(fn or node.op.name, ["none" if a is None else a for a in args], _changed(node))


def _squeeze_ones(v):
    return v[0] if isinstance(v, tuple) and len(v) == 1 else v


def _one(v):
    """A pair of equal sizes as the single int the builtins accept."""
    if isinstance(v, (tuple, list)) and len(v) > 0 and all(x == v[0] for x in v):
        return v[0]
    return tuple(v) if isinstance(v, list) else v


def _pool(node: Node) -> Call:
    fn, nd = POOLS[node.op.name]
    a = node.attrs
    if a.get("layout", "NCHW") != "NCHW" or a.get("divisor_override") is not None:
        raise unsupported(node, "with a layout or divisor_override has no .dln builtin")
    k = _one(a["kernel_size"])
    s = a["stride"] if a["stride"] is not None else a["kernel_size"]
    kw = []
    if _one(s) != k:
        kw.append(("stride", lit(_one(s))))
    if _one(a["padding"]) != 0:
        kw.append(("padding", lit(_one(a["padding"]))))
    if _one(a.get("dilation", 1)) != 1:
        kw.append(("dilation", lit(_one(a["dilation"]))))
    if a["ceil_mode"]:
        kw.append(("ceil_mode", "true"))
    if node.op.name.startswith("avg") and not a["count_include_pad"]:
        kw.append(("count_include_pad", "false"))
    return Call(fn, [node.inputs[0], lit(k)], kw)


def _adaptive(node: Node) -> Call:
    if node.attrs.get("layout", "NCHW") != "NCHW":
        raise unsupported(node, "with a channels-last layout has no .dln builtin")
    fn = {"adaptive_avg_pool2d": "adaptive_avgpool2d", "adaptive_max_pool2d": "adaptive_maxpool2d",
          "adaptive_avg_pool1d": "adaptive_avgpool1d"}[node.op.name]
    return Call(fn, [node.inputs[0], lit(_one(node.attrs["output_size"]))])


def _reshape(node: Node):
    x, = node.inputs
    shape = tuple(node.attrs["shape"])
    xs = tuple(x.type.shape)
    out = tuple(node.outputs[0].type.shape)
    if len(out) == len(xs) - 1:
        for a in range(len(xs)):
            if xs[a] == 1 and xs[:a] + xs[a + 1:] == out:
                return Call("squeeze", [x, str(a)])
    if len(out) == len(xs) + 1:
        for a in range(len(out)):
            if out[a] == 1 and out[:a] + out[a + 1:] == xs:
                return Call("unsqueeze", [x, str(a)])
    if len(out) == 2 and len(xs) >= 2 and out[0] == xs[0] and len(xs) > 2:
        from ...compiler.dims import prod
        if prod(xs[1:]) == out[1]:
            return Call("flatten", [x])
    return Call("reshape", [x] + [dim(d) for d in shape])


def _transpose(node: Node):
    axes = tuple(node.attrs["axes"])
    r = len(axes)
    moved = [i for i in range(r) if axes[i] != i]
    if len(moved) == 2 and axes[moved[0]] == moved[1]:
        a, b = moved
        if (a, b) == (r - 2, r - 1):
            return Call("transpose", [node.inputs[0]])
        return Call("transpose", [node.inputs[0], str(a), str(b)])
    return Call("permute", [node.inputs[0]] + [str(a) for a in axes])


def _slice(node: Node):
    x, = node.inputs
    r = x.type.rank
    begin, end = node.attrs["begin"], node.attrs["end"]
    strides = node.attrs["strides"] or (1,) * r
    items = []
    for b, e, s in zip(begin, end, strides):
        txt = ("" if b is None else str(b)) + ":" + ("" if e is None else str(e))
        if s not in (None, 1):
            txt += f":{s}"
        items.append(txt)
    while items and items[-1] == ":":
        items.pop()
    return Index(x, items or [":"])


def _full(node: Node):
    a = node.attrs
    shape, value, dt = tuple(a["shape"]), a["value"], a["dtype"]
    kw = [] if dt == "float32" else [("dtype", dtype_name(dt))]
    dims = [dim(d) for d in shape]
    if value == 0 or value == 1:
        return Call("zeros" if value == 0 else "ones", dims, kw)
    is_int = not dt.startswith(("float", "bfloat"))
    v = int(value) if is_int or dt == "bool" else float(value)
    return Call("full", [lit(shape) if shape else "()", lit(v)], kw)


def _arange(node: Node):
    a = node.attrs
    kw = [] if a["dtype"] == "int64" else [("dtype", dtype_name(a["dtype"]))]
    if a["start"] == 0 and a["step"] == 1:
        return Call("arange", [dim(a["stop"])], kw)
    args = [dim(a["start"]), dim(a["stop"])] + ([str(a["step"])] if a["step"] != 1 else [])
    return Call("arange", args, kw)


def _random(node: Node):
    a = node.attrs
    kw = [] if a["dtype"] == "float32" else [("dtype", dtype_name(a["dtype"]))]
    if node.op.name == "uniform":
        kw = [(k, lit(float(a[k]))) for k, d in (("low", 0.0), ("high", 1.0)) if a[k] != d] + kw
    return Call("randn" if node.op.name == "randn" else "uniform", [dim(d) for d in a["shape"]], kw)


def _sdpa(node: Node):
    q, k, v, m = node.inputs
    kw = []
    if m is not None:
        kw.append(("mask", m))
    if node.attrs["is_causal"]:
        kw.append(("causal", "true"))
    if node.attrs["scale"] is not None:
        kw.append(("scale", lit(float(node.attrs["scale"]))))
    return Call("scaled_dot_product_attention", [q, k, v], kw)


def _split(node: Node):
    sec = node.attrs["sections"]
    sec_txt = lit(list(sec)) if isinstance(sec, (list, tuple)) else str(sec)
    kw = [("axis", str(node.attrs["axis"]))] if node.attrs["axis"] != 0 else []
    return Call("split", [node.inputs[0], sec_txt], kw)


def _concat(node: Node):
    kw = [("axis", str(node.attrs["axis"]))] if node.attrs["axis"] != 0 else []
    return Call("concat", list(node.inputs), kw)


def _indexed(node: Node):
    x, idx = node.inputs
    return Call(node.op.name, [x, str(node.attrs["axis"]), idx])


def _embedding(node: Node):
    """A lookup in a declared table (tied to an LM head): `index_select` on the flattened indices,
    reshaped back, as GPT-2's spec writes it.  padding_idx only masks the gradient, which a
    functional lookup cannot express: such a table stays a layer's."""
    idx, w = node.inputs
    if node.attrs["padding_idx"] is not None:
        raise unsupported(node, "with padding_idx on a shared table has no functional .dln spelling")
    if idx.type.rank == 1:
        return Call("index_select", [w, "0", idx])
    from ...compiler.dims import prod
    flat = Call("reshape", [idx, dim(prod(tuple(idx.type.shape)))])
    out = tuple(node.outputs[0].type.shape)
    return Call("reshape", [Call("index_select", [w, "0", flat])] + [dim(d) for d in out])


def _dropout(node: Node):
    if not node.attrs["training"]:
        raise unsupported(node, "outside training is the identity and has no .dln spelling")
    return Call("dropout", [node.inputs[0], lit(float(node.attrs["p"]))])


def _mean(node: Node):
    x, = node.inputs
    a = node.attrs
    axis = a["axis"]
    axis = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    if x.type.rank >= 3 and not a["keepdims"] and a["axis"] is not None and axis == tuple(range(2, x.type.rank)):
        return Call("global_avgpool", [x])
    return generic(node)


WRITERS = {
    "mean": _mean,
    "neg": lambda n: Prefix("-", n.inputs[0]),
    "logical_not": lambda n: Prefix("not", n.inputs[0]),
    "cast": lambda n: Call("cast", [n.inputs[0], dtype_name(n.attrs["dtype"])]),
    "reshape": _reshape,
    "transpose": _transpose,
    "strided_slice": _slice,
    "full": _full,
    "arange": _arange,
    "randn": _random,
    "uniform": _random,
    "scaled_dot_product_attention": _sdpa,
    "split": _split,
    "concat": _concat,
    "gather": _indexed,
    "index_select": _indexed,
    "expand": lambda n: Call("expand", [n.inputs[0]] + [dim(d) for d in n.attrs["shape"]]),
    "one_hot": lambda n: Call("one_hot", [n.inputs[0], str(n.attrs["num_classes"])],
                              [] if n.attrs["dtype"] == "float32" else [("dtype", dtype_name(n.attrs["dtype"]))]),
    "sinusoidal_positions": lambda n: Call("sinusoidal_positions", [dim(n.attrs["length"]), str(n.attrs["dim"])],
                                           [] if n.attrs["dtype"] == "float32" else
                                           [("dtype", dtype_name(n.attrs["dtype"]))]),
    "dropout": _dropout,
    "embedding": _embedding,
    "local_response_norm": lambda n: generic(n, "local_response_norm"),
    "pad": lambda n: Call("pad", [n.inputs[0], lit(list(n.attrs["pad"]))], _changed(n, skip=("pad",))),
}
for _op in INFIX:
    WRITERS[_op] = (lambda o: lambda n: Infix(INFIX[o], n.inputs[0], n.inputs[1]))(_op)
for _op in POOLS:
    WRITERS[_op] = _pool
for _op in ("adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_avg_pool1d"):
    WRITERS[_op] = _adaptive

def _functional(fn: str, first: int):
    """A layer op whose weights no layer call can own, in its functional form
    (`conv2d(x, W, b, stride=...)`, `layernorm(x, normalized_shape=..., weight=W)`):
    the first `first` operands by position, the rest by keyword."""
    def write_it(node: Node) -> Call:
        args = list(node.inputs[:first])
        kw = [(k, v) for k, v in zip(_operand_names(node)[first:], node.inputs[first:]) if v is not None]
        if fn == "layernorm":
            kw.insert(0, ("normalized_shape", lit(tuple(node.attrs["normalized_shape"]))))
            return Call(fn, args, kw + [(k, v) for k, v in _changed(node, skip=("normalized_shape",))])
        if fn == "groupnorm":
            kw.insert(0, ("num_groups", lit(node.attrs["num_groups"])))
            return Call(fn, args, kw + _changed(node, skip=("num_groups",)))
        return Call(fn, args, kw + _changed(node))
    return write_it


def _operand_names(node: Node) -> list[str]:
    """The op's operand names in order ("weight?" -> "weight")."""
    return [o.rstrip("?*") for o in node.op.operands]


# the functional forms (norms): conv and norm ops with weights a layer call cannot own
WRITERS.update({"conv1d": _functional("conv1d", 2), "conv2d": _functional("conv2d", 2),
                "conv_transpose2d": _functional("conv_transpose2d", 2),
                "layer_norm": _functional("layernorm", 1), "group_norm": _functional("groupnorm", 1)})

# ops whose only .dln spelling is a layer call (their parameters belong to it)
LAYER_ONLY = {"batch_norm", "prelu", "rnn", "lstm", "gru"}


def write(node: Node):
    """The fallback expression of `node` (raises `Unsupported`)."""
    name = node.op.name
    if name in WRITERS:
        return WRITERS[name](node)
    if name in LAYER_ONLY:
        raise unsupported(node, "whose parameters no layer call can own (shared, computed or oddly shaped "
                          "weights)")
    if node.op.builtin is not None or node.op.variadic:
        raise unsupported(node, f"has no .dln builtin ({node.op.builtin or 'variadic'})")
    return generic(node)


__all__ = ["WRITERS", "write", "Unsupported", "unsupported"]
