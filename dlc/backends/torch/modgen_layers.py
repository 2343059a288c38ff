"""The dlc layers written as torch modules (nn.Linear, nn.Conv2d, nn.LSTM, ...):
one planner per layer kind, and `_plan_layers` choosing the layers whose
nodes a module call can replace."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...compiler.dims import Dim
from ...compiler.ir import Graph, Layer, Node, Value
from ...compiler.types import DType
from .lowering import render, torch_dtype
from .modgen_names import _MHA_PROJ, MHA_CLASS


@dataclass
class _Layer:
    """A dlc layer written as one torch module: constructed in __init__, called in forward."""

    record: Layer                      # the layer it writes (Graph.layers)
    ctor: str                          # e.g. nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    nodes: list                        # the IR nodes it replaces
    call: object                       # call(gen, module_expr) -> source lines (list[str])
    outputs: list = field(default_factory=list)   # values the call defines
    needs_mha: bool = False
    block: bool = False                # a call of a block instance (modgen_struct): located at the call

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


def _norm_call(node: Node, args: list):
    """`out = _norm_module(self.<norm>, x)`: the module's own forward, except where x's squares
    may overflow (the `_norm_module` helper)."""
    def call(gen, mod):
        out = gen.define_layer_output(node.outputs[0])
        return [f"{out} = _norm_module({mod}, {gen.name_of(args[0])})"]
    return call


def _plan_conv(rec, nodes):
    op = {"conv1d": "conv1d", "conv2d": "conv2d", "conv_transpose2d": "conv_transpose2d"}[rec.kind]
    n = _single(nodes, op)
    if n is None or n.attrs.get("layout", "NCHW") != "NCHW":    # channels-last: the generic lowering
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
    if n.attrs.get("layout", "NCHW") != "NCHW":
        return None
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
    return _Layer(rec, ctor, nodes, _norm_call(n, [x]), [n.outputs[0]])


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
    return _Layer(rec, ctor, nodes, _norm_call(n, [x]), [n.outputs[0]])


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
    return _Layer(rec, ctor, nodes, _norm_call(n, [x]), [n.outputs[0]])


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
                if o.id in state_values and rec.kind not in STATEFUL:
                    leaked = True
        if rec.kind in STATEFUL:  # its state updates must be exactly the module's own
            p = rec.name
            mine = {k for k in g.state_updates if k.startswith(p + ".")}
            want = {p + s for s in STATEFUL[rec.kind]} if mine else set()
            if mine != want or any(g.state_updates[k].producer is None
                                   or id(g.state_updates[k].producer) not in inside for k in want):
                leaked = True
        if not leaked:
            plans.append(plan)
    return plans


from .modgen_norms import STATEFUL, plan_instancenorm  # noqa: E402  (it builds on the helpers above)

_PLANNERS["instancenorm"] = plan_instancenorm
