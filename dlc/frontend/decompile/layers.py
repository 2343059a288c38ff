"""Layer calls: an IR op whose weights are parameters it alone uses is
written as the layer that creates them (`conv2d(x, 64, 3, padding=1,
name="conv1")`), the way a person writes the spec.

Each recogniser returns a `LayerCall` (the call without its name, and the
parameters it owns by their role: `weight`, `running_mean`, `weight_ih_l0`...)
or None when the node does not fit the layer (then the fallback writes it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...compiler.ir import Node, Value
from .exprs import Call
from .ops import _one
from .text import dtype_name, lit

_LAYER_PATH = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


@dataclass
class LayerCall:
    call: Call
    roles: list = field(default_factory=list)        # (graph param Value, role)
    node: Node | None = None
    # a bias the layer cannot own (shared by several ops, or computed): added after a bias-free call
    post_bias: Value | None = None

    def expr(self):
        """The statement stage: the call, or `call + bias` (the bias broadcast over the channel axis)."""
        if self.post_bias is None:
            return self.call
        from .exprs import Infix
        b = self.post_bias
        x = self.node.outputs[0]
        if self.call.fn == "dense" or x.type.rank == 1:
            return Infix("+", self.call, b)
        shape = [str(b.type.shape[0])] + ["1"] * (x.type.rank - 2)
        return Infix("+", self.call, Call("reshape", [b] + shape))

    def primary(self) -> Value:
        return self.roles[0][0]


def _is_param(v) -> bool:
    return v is not None and v.kind in ("param", "buffer")


def _same_dtype(x: Value, *ps) -> bool:
    return all(p is None or p.type.dtype == x.type.dtype for p in ps)


def _conv(node: Node):
    x, w, b = node.inputs
    if not _is_param(w) or not _same_dtype(x, w, b) or (b is not None and b.type.rank != 1):
        return None
    a = node.attrs
    if a.get("layout", "NCHW") != "NCHW" or not isinstance(x.type.shape[1], int):
        return None
    tr = node.op.name == "conv_transpose2d"
    groups = a["groups"]
    cout = w.type.shape[1] * groups if tr else w.type.shape[0]
    kernel = tuple(w.type.shape[2:])
    kw = []
    defaults = [("stride", 1), ("padding", 0)] + ([("output_padding", 0)] if tr else []) + [("dilation", 1)]
    for k, d in defaults:
        v = _one(a[k])
        if v != d:
            kw.append((k, lit(v)))
    if groups != 1:
        kw.append(("groups", str(groups)))
    return _with_bias(LayerCall(Call(node.op.name, [x, str(cout), lit(_one(kernel))], kw), [(w, "weight")]), b)


def _with_bias(lc: LayerCall, b) -> LayerCall:
    """The layer owns a bias parameter; any other bias is added after it (`recognise` moves a shared one)."""
    if b is None:
        lc.call.kwargs.append(("bias", "false"))
    elif _is_param(b):
        lc.roles.append((b, "bias"))
    else:
        lc.call.kwargs.append(("bias", "false"))
        lc.post_bias = b
    return lc


def _dense(node: Node):
    x, w, b = node.inputs
    if not _is_param(w) or not _same_dtype(x, w, b) or (b is not None and b.type.rank != 1):
        return None
    if w.type.rank != 2 or not isinstance(x.type.shape[-1], int):
        return None
    return _with_bias(LayerCall(Call("dense", [x, str(w.type.shape[0])]), [(w, "weight")]), b)


def _batchnorm(node: Node):
    x, rm, rv, w, b = node.inputs
    a = node.attrs
    if a["training"] or a.get("layout", "NCHW") != "NCHW" or not (_is_param(rm) and _is_param(rv)):
        return None
    if (w is None) != (b is None) or (w is not None and not (_is_param(w) and _is_param(b))):
        return None
    if not _same_dtype(x, rm, rv, w, b) or any(o is not None and o.type.rank != 1 for o in (rm, rv, w, b)):
        return None
    kw = [(k, lit(float(a[k]))) for k, d in (("eps", 1e-5), ("momentum", 0.1)) if a[k] != d]
    if w is None:
        kw.append(("affine", "false"))
    roles = ([(w, "weight"), (b, "bias")] if w is not None else []) + [(rm, "running_mean"),
                                                                      (rv, "running_var")]
    return LayerCall(Call("batchnorm", [x], kw), roles)


def _layernorm(node: Node):
    x, w, b = node.inputs
    if (w is None) != (b is None) or (w is not None and not (_is_param(w) and _is_param(b))):
        return None
    if not _same_dtype(x, w, b):
        return None
    k = len(node.attrs["normalized_shape"])
    kw = [("eps", lit(float(node.attrs["eps"])))] if node.attrs["eps"] != 1e-5 else []
    if w is None:
        kw.append(("affine", "false"))
        if k == 1:
            return None     # a layer with no parameters has no name to recover: the fallback is as good
    if k != 1:
        kw.append(("dims", str(k)))
    roles = [(w, "weight"), (b, "bias")] if w is not None else []
    return LayerCall(Call("layernorm", [x], kw), roles)


def _groupnorm(node: Node):
    x, w, b = node.inputs
    if w is None or b is None or not (_is_param(w) and _is_param(b)) or not _same_dtype(x, w, b):
        return None
    kw = [("eps", lit(float(node.attrs["eps"])))] if node.attrs["eps"] != 1e-5 else []
    return LayerCall(Call("groupnorm", [x, str(node.attrs["num_groups"])], kw), [(w, "weight"), (b, "bias")])


def _embedding(node: Node):
    idx, w = node.inputs
    if not _is_param(w) or w.type.rank != 2:
        return None
    kw = []
    if node.attrs["padding_idx"] is not None:
        kw.append(("padding_idx", str(node.attrs["padding_idx"])))
    if w.type.dtype.numpy_name != "float32":
        kw.append(("dtype", dtype_name(w.type.dtype.numpy_name)))
    return LayerCall(Call("embedding", [idx, str(w.type.shape[0]), str(w.type.shape[1])], kw), [(w, "weight")])


def _prelu(node: Node):
    x, w = node.inputs
    if not _is_param(w) or w.type.rank != 1 or not _same_dtype(x, w):
        return None
    c = w.type.shape[0]
    return LayerCall(Call("prelu", [x] + ([str(c)] if c != 1 else [])), [(w, "weight")])


def _recurrent(node: Node):
    kind = node.op.name
    a = node.attrs
    if kind == "lstm" and a.get("proj_size", 0):
        return None
    nstate = 2 if kind == "lstm" else 1
    x, states, weights = node.inputs[0], node.inputs[1:1 + nstate], node.inputs[1 + nstate:]
    if any(s is None for s in states) and any(s is not None for s in states):
        return None
    dirs = 2 if a["bidirectional"] else 1
    names = []
    for layer in range(a["num_layers"]):
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            names += [f"weight_ih{sfx}", f"weight_hh{sfx}"] + ([f"bias_ih{sfx}", f"bias_hh{sfx}"] if a["bias"] else [])
    if len(names) != len(weights) or not all(_is_param(w) for w in weights) or not _same_dtype(x, *weights):
        return None
    hidden = weights[1].type.shape[1]
    kw = []
    if a["num_layers"] != 1:
        kw.append(("layers", str(a["num_layers"])))
    if a["bidirectional"]:
        kw.append(("bidirectional", "true"))
    if a["batch_first"]:
        kw.append(("batch_first", "true"))
    if not a["bias"]:
        kw.append(("bias", "false"))
    if kind == "rnn" and a["nonlinearity"] != "tanh":
        kw.append(("nonlinearity", lit(a["nonlinearity"])))
    if states[0] is not None:
        from .exprs import TupleOf
        kw.append(("state", TupleOf(list(states)) if nstate == 2 else states[0]))
    return LayerCall(Call(kind, [x, str(hidden)], kw), list(zip(weights, names)))


RECOGNISERS = {"conv1d": _conv, "conv2d": _conv, "conv_transpose2d": _conv, "linear": _dense,
               "batch_norm": _batchnorm, "layer_norm": _layernorm, "group_norm": _groupnorm,
               "embedding": _embedding, "prelu": _prelu, "rnn": _recurrent, "lstm": _recurrent,
               "gru": _recurrent}

# the buffers a layer creates that its op does not read (eval batch norm's counter)
EXTRA_ROLES = {"batchnorm": ("num_batches_tracked",)}


def layer_path(lc: LayerCall) -> str:
    """The instance path the graph's parameter names give the layer: `layer1.0.conv1`
    for `layer1.0.conv1.weight`; a name that does not end in its role is the path itself."""
    p, role = lc.roles[0]
    suffix = "." + role
    if p.name.endswith(suffix):
        return p.name[:-len(suffix)]
    parents = {q.name.rsplit(".", 1)[0] for q, _ in lc.roles if "." in q.name}
    if len(parents) == 1 and all("." in q.name for q, _ in lc.roles) and len(lc.roles) > 1:
        return parents.pop()        # bn.scale, bn.B, bn.mean, bn.var: the layer is `bn`
    scope = lc.node.scope if lc.node is not None else ""
    if scope and _LAYER_PATH.fullmatch(scope):
        return scope                # an importer's module path (`onnx::Conv_193` inside `layer1.0.conv1`)
    return p.name


# layer ops the fallback can also write in a functional form (`ops.py`), given a declared weight
FUNCTIONAL = {"conv1d", "conv2d", "conv_transpose2d", "linear", "layer_norm", "group_norm", "embedding"}


def recognise(node: Node, uses: dict, tied=frozenset()) -> LayerCall | None:
    """The layer call that writes `node`, when its parameters are its own.  `tied`: parameter ids
    the fallback reads elsewhere (`tied_params`); a layer whose main weight is one of them is written
    in its functional form on the declared parameter, so both uses stay one tensor."""
    rec = RECOGNISERS.get(node.op.name)
    if rec is None:
        return None
    lc = rec(node)
    if lc is None or not lc.roles:
        return None
    if lc.roles[0][0].id in tied and node.op.name in FUNCTIONAL:
        return None
    lc.node = node
    if node.op.name == "linear" and uses.get(lc.roles[0][0].id, 0) != 1:
        return None     # a tied matrix (an LM head): `linear(x, W)` with W declared once
    # other shared weights (an exporter's deduplicated ones and zeros) are untied: each layer call
    # makes its own, and `Decompiled.copies` says which graph weight fills them
    opaque = all("." not in p.name for p, _ in lc.roles) and _LAYER_PATH.fullmatch(node.scope or "")
    if node.op.name == "linear" and not conforming(lc) and not opaque:
        return None     # `linear(x, W, b)` with declared params keeps names such as `cell.W` as they are
    return lc


def conforming(lc: LayerCall) -> bool:
    """Whether the parameters are named `<path>.<role>` with one path, as a layer names them."""
    path = layer_path(lc)
    return all(p.name == f"{path}.{role}" for p, role in lc.roles)


def tied_params(nodes: list, uses: dict) -> frozenset:
    """The parameter ids a fallback statement reads: an LM head `linear(h, wte)` on the token table
    makes `wte` a declared `param`, and the embedding reading it a functional lookup (as GPT-2's spec
    writes its tied head).  Refusing a layer makes its weights fallback reads too: iterate to the fixed
    point.  Scan bodies are left to their cells."""
    tied: set = set()
    while True:
        grown = set()
        for n in nodes:
            if n.body is not None or recognise(n, uses, tied) is not None:
                continue
            grown.update(v.id for v in n.inputs if _is_param(v) and v.id not in tied)
        if not grown:
            return frozenset(tied)
        tied |= grown
