"""A `.dln` model as a self-contained PyTorch module (`dlc compile --target torch`).

    src = generate_module(dlc.load("specs/resnet18.dln"))   # Python source, imports only torch
    net = load_module(dlc.load("specs/resnet18.dln"))       # an instance of the generated class
    net.load_state_dict(weights, strict=True)                # dlc's names, no renaming

The generated file holds one `nn.Module` subclass named after the model.  Its
parameters and buffers carry dlc's hierarchical names, so `state_dict()` keys
are dlc's parameter names (`layer1.0.conv1.weight`, `bn1.num_batches_tracked`):

* a dlc layer that *is* a torch layer becomes that module (dense -> nn.Linear,
  conv1d/conv2d/conv_transpose2d -> nn.Conv1d/Conv2d/ConvTranspose2d,
  batchnorm -> nn.BatchNorm1d/2d/3d, layernorm, groupnorm, embedding, prelu,
  lstm/gru/rnn -> nn.LSTM/GRU/RNN, multihead_attention -> a small generated
  `MultiheadAttention` holding q_proj, k_proj, v_proj and out_proj), and
  forward calls it: ``x = self.layer1[0].conv1(x)``;
* every other parameter or buffer (explicit `param`s, layers whose parameters
  are shared or nested) is an `nn.Parameter` or buffer on a `Scope` container
  at its path, and the ops using it are written with the shared per-op
  lowering (`lowering.LOWERING`) through the function generator (`funcgen`):
  the same variable names, symbolic-dimension handling and scan loops.

The module is generated from the *training* graph but behaves as PyTorch
modules do in both modes: dropout is ``F.dropout(x, p, self.training)``,
batch norm is the nn.BatchNorm module (batch statistics and running-stat
updates in training, running statistics in eval), and random ops draw from
torch's global generator.  Generation is deterministic: the same spec gives
the same bytes.
"""
from __future__ import annotations

import keyword
import linecache
import re
from dataclasses import dataclass, field
from itertools import count
from types import SimpleNamespace

from ...compiler.dims import Dim
from ...compiler.ir import Graph, Layer, Node, Value
from ...compiler.types import DType
from ...errors import DlcError
from .funcgen import _BUILTINS, _comment_text, _Gen, _location, _Namer, sanitize
from .lowering import helpers_used, render, string_literal, torch_dtype

__all__ = ["generate_module", "load_module", "module_class_name", "module_graph_of"]

SCOPE_CLASS = "Scope"
MHA_CLASS = "MultiheadAttention"

# nn.Module's own attribute names (a child called `forward` or `training` is
# registered and read through the module tables instead of as an attribute)
_MODULE_ATTRS = frozenset({
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile",
    "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer",
    "get_extra_state", "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia",
    "named_buffers", "named_children", "named_modules", "named_parameters", "parameters",
    "register_backward_hook", "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter",
    "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_", "set_extra_state",
    "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train", "type", "xpu", "zero_grad",
    "training",
})


def _module_attrs() -> frozenset:
    try:  # whatever this torch version adds
        from torch import nn
        return _MODULE_ATTRS | {n for n in dir(nn.Module) if not n.startswith("_")}
    except ImportError:  # generation itself needs no torch
        return _MODULE_ATTRS


_RESERVED_GLOBALS = frozenset({"self", "nn", "torch", "F", "math", SCOPE_CLASS, MHA_CLASS})
_RANDOM = frozenset({"dropout", "randn", "uniform"})
_MHA_PROJ = ("q_proj", "k_proj", "v_proj", "out_proj")


def _dlc_version() -> str:
    try:
        from ..._version import __version__
        return str(__version__)
    except ImportError:
        return "unknown"


# ---------------------------------------------------------------------------
# names and paths
# ---------------------------------------------------------------------------

class _Paths:
    """Source expressions for the objects at dlc's dotted names."""

    def __init__(self):
        self.attrs = _module_attrs()
        self.indexed_root = False   # the root needs Scope.__getitem__ (a numeric or odd top-level name)
        self.training_child = False  # something is called `training`, like nn.Module's mode flag

    def attr_ok(self, seg: str) -> bool:
        return (seg.isidentifier() and seg.isascii() and not keyword.iskeyword(seg)
                and not keyword.issoftkeyword(seg) and not seg.startswith("_") and seg not in self.attrs)

    def note(self, path: str) -> None:
        if "training" in path.split("."):
            self.training_child = True

    def step(self, seg: str) -> str:
        """`.conv1`, `[0]` or `["forward"]`: one step down the module tree."""
        if self.attr_ok(seg):
            return "." + seg
        if seg.isdigit() and seg.isascii() and str(int(seg)) == seg:
            return f"[{int(seg)}]"
        return f"[{string_literal(seg)}]"

    def expr(self, path: str) -> str:
        out = "self"
        for i, seg in enumerate(path.split(".") if path else []):
            st = self.step(seg)
            if i == 0 and st.startswith("["):
                self.indexed_root = True
            out += st
        return out

    def register(self, parent: str, seg: str, value: str, table: str) -> str:
        """Statement putting `value` under `seg` of the container at `parent`.

        table: "module", "param" or "buffer"."""
        holder = self.expr(parent)
        self.note(f"{parent}.{seg}")
        if self.attr_ok(seg) and table != "buffer":
            return f"{holder}.{seg} = {value}"
        if table == "buffer" and self.attr_ok(seg):
            return f"{holder}.register_buffer({string_literal(seg)}, {value})"
        if seg.isdigit() and seg.isascii() and table == "module":
            return f"{holder}.add_module({string_literal(seg)}, {value})"
        if seg.isdigit() and seg.isascii() and table == "param":
            return f"{holder}.register_parameter({string_literal(seg)}, {value})"
        if seg.isdigit() and seg.isascii():
            return f"{holder}.register_buffer({string_literal(seg)}, {value})"
        # a name nn.Module uses itself (`forward`, `training`...) or no identifier:
        # straight into the module's tables, which state_dict() reads
        tables = {"module": "_modules", "param": "_parameters", "buffer": "_buffers"}
        return f"{holder}.{tables[table]}[{string_literal(seg)}] = {value}"


def module_class_name(name: str) -> str:
    """The generated class's name: the model's, sanitised (`Model_` when it would clash)."""
    cls = sanitize(name, "Model")
    if (keyword.iskeyword(cls) or keyword.issoftkeyword(cls) or cls in _BUILTINS
            or cls in _RESERVED_GLOBALS):
        cls += "_"
    return cls


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _last(path: str) -> str:
    return path.rpartition(".")[2]


# ---------------------------------------------------------------------------
# layers that are torch modules
# ---------------------------------------------------------------------------

@dataclass
class _Layer:
    """A dlc layer written as one torch module: constructed in __init__, called in forward."""

    record: Layer                      # the layer it writes (Graph.layers)
    ctor: str                          # e.g. nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    nodes: list                        # the IR nodes it replaces
    call: object                       # call(gen, module_expr) -> source lines (list[str])
    outputs: list = field(default_factory=list)   # values the call defines
    needs_mha: bool = False

    @property
    def name(self) -> str:
        return self.record.name


def _dtype_kw(v: Value) -> str:
    dt = v.type.dtype
    return "" if dt == DType.f32 else f", dtype={torch_dtype(dt)}"


def _int_or_tuple(v) -> str:
    if isinstance(v, (tuple, list)) and len(v) > 0 and all(x == v[0] for x in v):
        return render(int(v[0]))
    return render(v)


def _kw(name: str, value, default) -> str:
    if isinstance(value, (tuple, list)) and not isinstance(default, (tuple, list)):
        if all(x == default for x in value):
            return ""
        return f", {name}={_int_or_tuple(value)}"
    if value == default and type(value) is type(default):
        return ""
    return f", {name}={render(value)}"


def _is_param(v: Value | None, name: str) -> bool:
    return v is not None and v.kind in ("param", "buffer") and v.name == name


def _concrete_shape(v: Value) -> tuple | None:
    if any(isinstance(d, Dim) for d in v.type.shape):
        return None
    return tuple(int(d) for d in v.type.shape)


def _single(nodes, op: str):
    return nodes[0] if len(nodes) == 1 and nodes[0].op.name == op else None


def _plan_dense(rec, nodes):
    n = _single(nodes, "linear")
    if n is None:
        return None
    x, w, b = (list(n.inputs) + [None] * 3)[:3]
    if not _is_param(w, rec.name + ".weight") or (b is not None and not _is_param(b, rec.name + ".bias")):
        return None
    out_f, in_f = _concrete_shape(w) or (None, None)
    if out_f is None:
        return None
    ctor = f"nn.Linear({in_f}, {out_f}{'' if b is not None else ', bias=False'}{_dtype_kw(w)})"
    return _Layer(rec, ctor, nodes, _simple_call(n, [x]), [n.outputs[0]])


def _simple_call(node: Node, args: list, long_index: bool = False):
    def call(gen, mod):
        a = [gen.name_of(v) for v in args]
        if long_index:
            a[0] = f"{a[0]}.long()"
        out = gen.define_layer_output(node.outputs[0])
        return [f"{out} = {mod}({', '.join(a)})"]
    return call


def _plan_conv(rec, nodes):
    op = {"conv1d": "conv1d", "conv2d": "conv2d", "conv_transpose2d": "conv_transpose2d"}[rec.kind]
    n = _single(nodes, op)
    if n is None:
        return None
    x, w, b = (list(n.inputs) + [None] * 3)[:3]
    if not _is_param(w, rec.name + ".weight") or (b is not None and not _is_param(b, rec.name + ".bias")):
        return None
    shape = _concrete_shape(w)
    if shape is None:
        return None
    a = n.attrs
    groups = int(a.get("groups", 1))
    k = shape[2:]
    if op == "conv_transpose2d":
        cin, cout = shape[0], shape[1] * groups
        cls = "nn.ConvTranspose2d"
        kws = (_kw("stride", a["stride"], 1) + _kw("padding", a["padding"], 0)
               + _kw("output_padding", a["output_padding"], 0) + _kw("groups", groups, 1)
               + _kw("dilation", a["dilation"], 1))
    else:
        cout, cin = shape[0], shape[1] * groups
        cls = "nn.Conv1d" if op == "conv1d" else "nn.Conv2d"
        pad = a["padding"]
        pad_kw = f", padding={render(pad)}" if isinstance(pad, str) else _kw("padding", pad, 0)
        kws = (_kw("stride", a["stride"], 1) + pad_kw + _kw("dilation", a["dilation"], 1)
               + _kw("groups", groups, 1))
    ctor = (f"{cls}({cin}, {cout}, {_int_or_tuple(k)}{kws}"
            f"{'' if b is not None else ', bias=False'}{_dtype_kw(w)})")
    return _Layer(rec, ctor, nodes, _simple_call(n, [x]), [n.outputs[0]])


def _plan_batchnorm(rec, nodes):
    bns = [n for n in nodes if n.op.name == "batch_norm"]
    if len(bns) != 1:
        return None
    n = bns[0]
    x, rm, rv, w, b = (list(n.inputs) + [None] * 5)[:5]
    p = rec.name
    if not (_is_param(rm, p + ".running_mean") and _is_param(rv, p + ".running_var")):
        return None
    if (w is None) != (b is None) or (w is not None and not (_is_param(w, p + ".weight")
                                                            and _is_param(b, p + ".bias"))):
        return None
    if set(rec.params) != {p + s for s in (".running_mean", ".running_var", ".num_batches_tracked")} | (
            {p + ".weight", p + ".bias"} if w is not None else set()):
        return None
    others = [m for m in nodes if m is not n]
    if any(m.op.name not in ("full", "add") for m in others):
        return None
    cls = {2: "nn.BatchNorm1d", 3: "nn.BatchNorm1d", 4: "nn.BatchNorm2d", 5: "nn.BatchNorm3d"}.get(x.type.rank)
    shape = _concrete_shape(rm)
    mom = n.attrs.get("momentum", 0.1)
    if cls is None or shape is None or mom is None:
        return None
    kws = _kw("eps", float(n.attrs.get("eps", 1e-5)), 1e-5) + _kw("momentum", float(mom), 0.1)
    if w is None:
        kws += ", affine=False"
    ctor = f"{cls}({shape[0]}{kws}{_dtype_kw(rm)})"
    return _Layer(rec, ctor, nodes, _simple_call(n, [x]), [n.outputs[0]])


def _plan_layernorm(rec, nodes):
    n = _single(nodes, "layer_norm")
    if n is None:
        return None
    x, w, b = (list(n.inputs) + [None] * 3)[:3]
    if w is None or b is None or not (_is_param(w, rec.name + ".weight") and _is_param(b, rec.name + ".bias")):
        return None  # without parameters it is a plain F.layer_norm
    ns = tuple(n.attrs["normalized_shape"])
    if any(not isinstance(d, int) for d in ns):
        return None
    shape = render(ns[0]) if len(ns) == 1 else render(ns)
    ctor = f"nn.LayerNorm({shape}{_kw('eps', float(n.attrs.get('eps', 1e-5)), 1e-5)}{_dtype_kw(w)})"
    return _Layer(rec, ctor, nodes, _simple_call(n, [x]), [n.outputs[0]])


def _plan_groupnorm(rec, nodes):
    n = _single(nodes, "group_norm")
    if n is None:
        return None
    x, w, b = (list(n.inputs) + [None] * 3)[:3]
    if w is None or b is None or not (_is_param(w, rec.name + ".weight") and _is_param(b, rec.name + ".bias")):
        return None
    c = _concrete_shape(w)
    if c is None:
        return None
    ctor = (f"nn.GroupNorm({int(n.attrs['num_groups'])}, {c[0]}"
            f"{_kw('eps', float(n.attrs.get('eps', 1e-5)), 1e-5)}{_dtype_kw(w)})")
    return _Layer(rec, ctor, nodes, _simple_call(n, [x]), [n.outputs[0]])


def _plan_embedding(rec, nodes):
    n = _single(nodes, "embedding")
    if n is None:
        return None
    idx, w = n.inputs[0], n.inputs[1]
    if not _is_param(w, rec.name + ".weight"):
        return None
    shape = _concrete_shape(w)
    if shape is None:
        return None
    pad = n.attrs.get("padding_idx")
    ctor = f"nn.Embedding({shape[0]}, {shape[1]}{_kw('padding_idx', pad, None)}{_dtype_kw(w)})"
    long_index = idx.type.dtype not in (DType.i64, DType.i32)
    return _Layer(rec, ctor, nodes, _simple_call(n, [idx], long_index), [n.outputs[0]])


def _plan_prelu(rec, nodes):
    n = _single(nodes, "prelu")
    if n is None:
        return None
    x, w = n.inputs[0], n.inputs[1]
    if not _is_param(w, rec.name + ".weight"):
        return None
    shape = _concrete_shape(w)
    if shape is None or len(shape) != 1:
        return None
    ctor = f"nn.PReLU({shape[0]}{_dtype_kw(w)})"
    return _Layer(rec, ctor, nodes, _simple_call(n, [x]), [n.outputs[0]])


def _plan_recurrent(rec, nodes):
    kind = rec.kind
    n = _single(nodes, kind)
    if n is None:
        return None
    a = n.attrs
    if a.get("proj_size", 0):
        return None
    ns = 2 if kind == "lstm" else 1
    x = n.inputs[0]
    states = list(n.inputs[1:1 + ns])
    weights = list(n.inputs[1 + ns:])
    dirs = 2 if a["bidirectional"] else 1
    names = []
    for layer in range(int(a["num_layers"])):
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            names += ["weight_ih" + sfx, "weight_hh" + sfx] + (["bias_ih" + sfx, "bias_hh" + sfx] if a["bias"] else [])
    if len(names) != len(weights) or not all(_is_param(w, f"{rec.name}.{nm}") for w, nm in zip(weights, names)):
        return None
    if any(s is None for s in states) and not all(s is None for s in states):
        return None
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    w_ih = _concrete_shape(weights[0])
    if w_ih is None:
        return None
    hidden, in_size = w_ih[0] // gates, w_ih[1]
    cls = {"rnn": "nn.RNN", "lstm": "nn.LSTM", "gru": "nn.GRU"}[kind]
    kws = (_kw("num_layers", int(a["num_layers"]), 1) + _kw("bias", bool(a["bias"]), True)
           + _kw("batch_first", bool(a["batch_first"]), False)
           + _kw("bidirectional", bool(a["bidirectional"]), False))
    if kind == "rnn":
        kws += _kw("nonlinearity", a.get("nonlinearity", "tanh"), "tanh")
    ctor = f"{cls}({in_size}, {hidden}{kws}{_dtype_kw(weights[0])})"

    def call(gen, mod):
        xs = gen.name_of(x)
        args = [xs]
        if states[0] is not None:
            st = [gen.name_of(s) for s in states]
            args.append(f"({st[0]}, {st[1]})" if kind == "lstm" else st[0])
        outs = [gen.define_layer_output(n.outputs[0])]
        outs += [gen.define(o, o.name or hint) for o, hint in zip(n.outputs[1:], ("h_n", "c_n"))]
        lhs = f"{outs[0]}, ({outs[1]}, {outs[2]})" if kind == "lstm" else f"{outs[0]}, {outs[1]}"
        return [f"{lhs} = {mod}({', '.join(args)})"]
    return _Layer(rec, ctor, nodes, call, list(n.outputs))


def _plan_mha(rec, nodes):
    p = rec.name
    lin = {}
    for m in nodes:
        if m.op.name == "linear":
            lin[m.scope[len(p) + 1:] if m.scope.startswith(p + ".") else ""] = m
    if set(lin) != set(_MHA_PROJ):
        return None
    sdpa = [m for m in nodes if m.op.name == "scaled_dot_product_attention"]
    shapes = [m for m in nodes if m.op.name in ("reshape", "transpose")]
    if len(sdpa) != 1 or len(shapes) + len(lin) + 1 != len(nodes):
        return None
    sdpa = sdpa[0]
    if sdpa.attrs.get("scale") is not None:
        return None
    bias = None
    for nm, m in lin.items():
        w, b = m.inputs[1], (m.inputs[2] if len(m.inputs) > 2 else None)
        if not _is_param(w, f"{p}.{nm}.weight") or (b is not None and not _is_param(b, f"{p}.{nm}.bias")):
            return None
        if bias is not None and bias != (b is not None):
            return None
        bias = b is not None
    # structure: q/k/v projections -> [N, L, h, d] -> heads first -> sdpa -> back -> out_proj
    reshapes = [m for m in shapes if m.op.name == "reshape" and len(m.attrs["shape"]) == 4]
    if not reshapes:
        return None
    heads = reshapes[0].attrs["shape"][2]
    E = _concrete_shape(lin["q_proj"].inputs[1])
    kdim = _concrete_shape(lin["k_proj"].inputs[1])
    vdim = _concrete_shape(lin["v_proj"].inputs[1])
    if not isinstance(heads, int) or E is None or kdim is None or vdim is None or E[0] != E[1]:
        return None
    embed = E[0]
    q_in, k_in, v_in = (lin[s].inputs[0] for s in ("q_proj", "k_proj", "v_proj"))
    mask = sdpa.inputs[3] if len(sdpa.inputs) > 3 else None
    causal = bool(sdpa.attrs.get("is_causal", False))
    kws = (_kw("bias", bias, True) + _kw("causal", causal, False) + _kw("kdim", kdim[1], embed)
           + _kw("vdim", vdim[1], embed))
    ctor = f"{MHA_CLASS}({embed}, {heads}{kws}{_dtype_kw(lin['q_proj'].inputs[1])})"
    out_v = lin["out_proj"].outputs[0]

    def call(gen, mod):
        args = [gen.name_of(q_in)]
        if not (k_in is q_in and v_in is q_in):
            args.append(gen.name_of(k_in))
            if v_in is not k_in:
                args.append(gen.name_of(v_in))
        if mask is not None:
            args.append(f"mask={gen.name_of(mask)}")
        return [f"{gen.define_layer_output(out_v)} = {mod}({', '.join(args)})"]
    return _Layer(rec, ctor, nodes, call, [out_v], needs_mha=True)


_PLANNERS = {
    "dense": _plan_dense, "conv1d": _plan_conv, "conv2d": _plan_conv, "conv_transpose2d": _plan_conv,
    "batchnorm": _plan_batchnorm, "layernorm": _plan_layernorm, "groupnorm": _plan_groupnorm,
    "embedding": _plan_embedding, "prelu": _plan_prelu, "lstm": _plan_recurrent, "gru": _plan_recurrent,
    "rnn": _plan_recurrent, "multihead_attention": _plan_mha,
}


def _graphs(g: Graph):
    yield g
    for n in g.nodes:
        if n.body is not None:
            yield from _graphs(n.body)


def _plan_layers(g: Graph) -> list[_Layer]:
    """The layers written as torch modules; the rest stay functional."""
    by_scope: dict[str, list] = {}
    home: dict[int, int] = {}          # node id -> id of the graph holding it
    for sub in _graphs(g):
        for n in sub.nodes:
            by_scope.setdefault(n.scope, []).append(n)
            home[id(n)] = id(sub)
    # every use of every value: by a node, or as the output of a (sub)graph
    uses: dict[int, list] = {}
    for sub in _graphs(g):
        for n in sub.nodes:
            for v in n.inputs:
                if v is not None:
                    uses.setdefault(v.id, []).append(id(n))
        for v in sub.outputs:
            uses.setdefault(v.id, []).append(None)
    state_values = {v.id for v in g.state_updates.values()}
    counts: dict[str, int] = {}
    for rec in g.layers:
        counts[rec.name] = counts.get(rec.name, 0) + 1
    plans = []
    for rec in g.layers:
        planner = _PLANNERS.get(rec.kind)
        if planner is None or counts[rec.name] != 1 or not rec.name:
            continue
        nodes = list(by_scope.get(rec.name, []))
        if rec.kind == "multihead_attention":
            for sfx in _MHA_PROJ:
                nodes += by_scope.get(f"{rec.name}.{sfx}", [])
            order = {id(n): i for i, n in enumerate(n for sub in _graphs(g) for n in sub.nodes)}
            nodes.sort(key=lambda n: order[id(n)])
        if not nodes or len({home[id(n)] for n in nodes}) != 1:
            continue
        try:
            plan = planner(rec, nodes)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            plan = None
        if plan is None:
            continue
        # the call must define every value of the layer that is used elsewhere
        inside = {id(n) for n in nodes}
        given = {v.id for v in plan.outputs}
        leaked = False
        for n in nodes:
            for o in n.outputs:
                if o.id in given:
                    continue
                if any(u is None or u not in inside for u in uses.get(o.id, [])):
                    leaked = True
                if o.id in state_values and rec.kind != "batchnorm":
                    leaked = True
        if rec.kind == "batchnorm":  # its state updates must be exactly the module's own
            p = rec.name
            mine = {k for k in g.state_updates if k.startswith(p + ".")}
            want = {p + ".running_mean", p + ".running_var", p + ".num_batches_tracked"} if mine else set()
            if mine != want or any(g.state_updates[k].producer is None
                                   or id(g.state_updates[k].producer) not in inside for k in want):
                leaked = True
        if not leaked:
            plans.append(plan)
    return plans


# ---------------------------------------------------------------------------
# the forward method: funcgen's generator, with layer calls and mode-generic ops
# ---------------------------------------------------------------------------

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
    def generate_forward(self) -> str:
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
        return _tidy("\n".join(lines) + "\n")

    def _emit_nodes(self, g, out: list, indent: str) -> None:
        for node in g.nodes:
            if id(node) in self.skip:
                continue
            self._comment_block(node, out, indent)
            plan = self.anchor.get(id(node))
            if plan is not None:
                mod = self.paths.expr(plan.name)
                stmts = plan.call(self, mod)
                stmts[0] += _location(node)
                out += [indent + s for s in stmts]
            elif node.op.name in _RANDOM:
                out.append(indent + self._random(node) + _location(node))
            elif node.op.name == "batch_norm":
                out += [indent + s for s in self._batch_norm(node)]
            else:
                super()._emit_nodes(SimpleNamespace(nodes=[node]), out, indent)

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
                self.name_of(w) or "None", self.name_of(b) or "None", "self.training",
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


# ---------------------------------------------------------------------------
# the module
# ---------------------------------------------------------------------------

_SCOPE_SRC = f'''\
class {SCOPE_CLASS}(nn.Module):
    """A name scope of the .dln model (a block instance, or a layer written out
    as functions): its sub-layers, parameters and buffers, reachable as
    attributes or by key (``scope[0]``, ``scope["forward"]``)."""

    def __getitem__(self, key):
        key = str(key)
        for table in (self._modules, self._parameters, self._buffers):
            if key in table:
                return table[key]
        raise KeyError(key)
'''

_SCOPE_TRAINING_SRC = '''
    def __setattr__(self, name, value):
        # a child here is called `training`: the mode flag itself stays a plain attribute
        if name == "training" and isinstance(value, bool):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)
'''

_MHA_SRC = f'''\
class {MHA_CLASS}(nn.Module):
    """dlc's multihead_attention on batch-first [N, L, E] tensors: separate
    q/k/v projections, F.scaled_dot_product_attention, an output projection."""

    def __init__(self, embed_dim, num_heads, bias=True, causal=False, kdim=None, vdim=None, dtype=None):
        super().__init__()
        self.num_heads = num_heads
        self.causal = causal
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        self.k_proj = nn.Linear(kdim or embed_dim, embed_dim, bias=bias, dtype=dtype)
        self.v_proj = nn.Linear(vdim or embed_dim, embed_dim, bias=bias, dtype=dtype)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)

    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        n, length, embed = query.shape
        heads = self.num_heads
        q = self.q_proj(query).reshape(n, length, heads, embed // heads).transpose(1, 2)
        k = self.k_proj(key).reshape(n, key.shape[1], heads, embed // heads).transpose(1, 2)
        v = self.v_proj(value).reshape(n, value.shape[1], heads, embed // heads).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal)
        return self.out_proj(o.transpose(1, 2).reshape(n, length, embed))
'''

_INITS = {
    "normal": ("nn.init.normal_", (("mean", 0.0), ("std", 1.0))),
    "uniform": ("nn.init.uniform_", (("low", 0.0, "a"), ("high", 1.0, "b"))),
    "trunc_normal": ("nn.init.trunc_normal_", (("mean", 0.0), ("std", 1.0), ("a", -2.0), ("b", 2.0))),
    "xavier_uniform": ("nn.init.xavier_uniform_", (("gain", 1.0),)),
    "xavier_normal": ("nn.init.xavier_normal_", (("gain", 1.0),)),
    "kaiming_uniform": ("nn.init.kaiming_uniform_", (("a", 0.0), ("mode", "fan_in"),
                                                     ("nonlinearity", "leaky_relu"))),
    "kaiming_normal": ("nn.init.kaiming_normal_", (("a", 0.0), ("mode", "fan_in"),
                                                   ("nonlinearity", "leaky_relu"))),
    "orthogonal": ("nn.init.orthogonal_", (("gain", 1.0),)),
}


def _init_expr(p: Value) -> str:
    """A tensor expression initialised as dlc's `Init` says (same distribution,
    torch's generator): ``nn.init.xavier_uniform_(torch.empty(256, 72))``."""
    shape = tuple(int(d) if not isinstance(d, Dim) else d for d in p.type.shape)
    size = render(shape)
    dt = "" if p.type.dtype == DType.f32 else f", dtype={torch_dtype(p.type.dtype)}"
    init = p.param.init if p.param is not None else None
    kind = init.kind if init is not None else "zeros"
    k = init.kwargs() if init is not None else {}
    if kind == "zeros" or (kind not in _INITS and kind not in ("ones", "constant")):
        return f"torch.zeros({size}{dt})"
    if kind == "ones":
        return f"torch.ones({size}{dt})"
    if kind == "constant":
        return f"torch.full({size}, {render(k.get('value', 0.0))}{dt})"
    fn, spec = _INITS[kind]
    kws = []
    for item in spec:
        key, default = item[0], item[1]
        name = item[2] if len(item) > 2 else key
        v = k.get(key, default)
        if v != default:
            kws.append(f"{name}={render(v)}")
    expr = f"{fn}(torch.empty({size}{dt}){''.join(', ' + s for s in kws)})"
    if k.get("padding_idx") is not None:
        expr = f"{expr}.index_fill(0, torch.tensor([{int(k['padding_idx'])}]), 0.0)"
    return expr


def module_graph_of(model) -> Graph:
    """The graph a module is generated from: `model` itself when it is a
    `Graph`, else what its `module_graph()` gives (`dlc.Model.module_graph`:
    the training graph, symbolic in every dimension the parameters allow).

    The graph is all this backend reads: its nodes and their scopes, its
    parameters, and its layer table (`Graph.layers`)."""
    if isinstance(model, Graph):
        return model
    module_graph = getattr(model, "module_graph", None)
    if module_graph is None:
        raise TypeError(f"expected a dlc Graph or a model with module_graph(), got {type(model).__name__}")
    return module_graph()


def _generate(model) -> tuple[str, str]:
    g = module_graph_of(model)
    cls = module_class_name(g.name)
    paths = _Paths()
    plans = _plan_layers(g)

    # which layer owns each parameter; a layer whose path is also a container
    # for something else (a shared prefix) stays functional
    while True:
        owner: dict[str, _Layer] = {}
        for plan in plans:
            for pname in plan.record.params:
                owner[pname] = plan
        layer_paths = {plan.name: plan for plan in plans}
        clash = set()
        for p in g.params:
            path = owner[p.name].name if p.name in owner else _parent(p.name)
            segs = path.split(".") if path else []
            for i in range(len(segs)):
                prefix = ".".join(segs[:i + 1])
                if prefix in layer_paths and (p.name not in owner or owner[p.name].name != prefix):
                    clash.add(prefix)
        for name, plan in layer_paths.items():
            if any(p.name == name for p in g.params):
                clash.add(name)
        if not clash:
            break
        plans = [p for p in plans if p.name not in clash]

    # __init__: containers, layers and parameters in dlc's parameter order
    init: list[str] = []
    made: set[str] = {""}
    done: set[str] = set()
    param_src: dict[str, str] = {}

    def ensure(path: str) -> None:
        if path in made:
            return
        ensure(_parent(path))
        init.append(paths.register(_parent(path), _last(path), f"{SCOPE_CLASS}()", "module"))
        made.add(path)

    for p in g.params:
        plan = owner.get(p.name)
        if plan is not None:
            param_src[p.name] = paths.expr(plan.name) + "".join(
                paths.step(s) for s in p.name[len(plan.name) + 1:].split("."))
            if plan.name in done:
                continue
            done.add(plan.name)
            ensure(_parent(plan.name))
            init.append(paths.register(_parent(plan.name), _last(plan.name), plan.ctor, "module")
                        + f"  # {_comment_text(plan.record.kind)} @ {_span_text(plan.record.span)}")
            made.add(plan.name)
            continue
        parent = _parent(p.name)
        ensure(parent)
        value = _init_expr(p)
        if p.kind == "buffer":
            init.append(paths.register(parent, _last(p.name), value, "buffer"))
        else:
            trainable = p.param is None or p.param.trainable
            value = f"nn.Parameter({value}{'' if trainable else ', requires_grad=False'})"
            init.append(paths.register(parent, _last(p.name), value, "param"))
        param_src[p.name] = paths.expr(p.name)

    # dimensions no input reveals fall back to the model's example sizes
    dims = {k: v for k, v in g.dims.items() if isinstance(v, int)}
    fwd = _ForwardGen(g, cls, paths, plans, param_src, {r.name for r in g.layers}, dims)
    try:
        forward = fwd.generate_forward()
    except ValueError as e:
        raise DlcError(f"cannot generate PyTorch code for {g.name}: {e}", g.span) from None
    uses_scope = paths.indexed_root or any(f"{SCOPE_CLASS}()" in ln for ln in init)
    needs_mha = any(p.needs_mha for p in plans)

    base = SCOPE_CLASS if paths.indexed_root else "nn.Module"
    span = g.span
    doc_src = _comment_text(span.file if span is not None else "?")
    cls_lines = [f"class {cls}({base}):",
                 f'    """{_comment_text(g.name)} from {doc_src}, generated by dlc.',
                 "",
                 "    Parameter and buffer names are dlc's: load dlc weights with",
                 "    load_state_dict(weights, strict=True).",
                 '    """',
                 "",
                 "    def __init__(self):",
                 "        super().__init__()"]
    cls_lines += ["        " + ln for ln in init]
    cls_lines.append("")
    cls_lines += ["    " + ln if ln else "" for ln in forward.rstrip("\n").split("\n")]
    cls_src = "\n".join(cls_lines) + "\n"

    helpers = helpers_used(cls_src)
    from .lowering import HELPERS
    parts = [HELPERS[h] for h in helpers]
    if uses_scope or paths.indexed_root:
        parts.append(_SCOPE_SRC + (_SCOPE_TRAINING_SRC if paths.training_child else ""))
    if needs_mha:
        parts.append(_MHA_SRC)
    parts.append(cls_src)
    code = "\n\n".join(p.rstrip("\n") + "\n" for p in parts)

    imports = []
    if "math." in code:
        imports.append("import math")
    imports.append("")
    if re.search(r"(?<![\w.])torch\.", code):
        imports.append("import torch")
    if re.search(r"(?<![\w.])F\.", code):
        imports.append("import torch.nn.functional as F")
    imports.append("from torch import nn")
    while imports and imports[0] == "":
        imports.pop(0)
    header = [(f"# Generated by dlc {_comment_text(_dlc_version())} from {doc_src} "
               f"(model {_comment_text(g.name)}); do not edit."),
              "# A self-contained PyTorch module: it imports only torch.",
              f'"""{_comment_text(g.name)} as a PyTorch nn.Module (generated by dlc)."""',
              ""]
    src = "\n".join(header + imports) + "\n\n\n" + code
    return src, cls


def _span_text(span) -> str:
    if span is None:
        return "?"
    return f"{_comment_text(span.file)}:{int(span.line)}"


def generate_module(model) -> str:
    """Python source of a self-contained module defining the model's `nn.Module`.

    `model` is a `Graph` (with its layer table) or a `dlc.Model`."""
    return _generate(model)[0]


_loaded = count()


def load_module(model, dtype: str | None = None):
    """Execute the generated source in a fresh namespace; returns a new instance.

    `dtype="float64"` runs the float model in double precision (as `Model.run`
    does): the float32 constants the code creates become float64 and the
    parameters are converted."""
    src, cls = _generate(model)
    if dtype not in (None, "float32", "f32"):
        if dtype not in ("float64", "f64"):
            raise DlcError(f"unsupported dtype {dtype!r} for the torch backend", hint="float32 or float64")
        src = re.sub(r"(?<![\w.])torch\.float32(?!\w)", "torch.float64", src)
    filename = f"<dlc-torch-module {next(_loaded)}: {cls}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    namespace = {"__name__": f"dlc_generated_{cls}"}
    exec(compile(src, filename, "exec"), namespace)  # noqa: S102 -- our own generated code
    module = namespace[cls]()
    if dtype in ("float64", "f64"):
        import torch
        module = module.to(torch.float64)
    return module
