"""`dlc export model.dln -o model.onnx`: a spec (and its weights) as ONNX.

    eval (default)  the model's forward graph after the -O pipeline, symbolic
                    dimensions kept as named ONNX dims unless --bind sizes them
    QDQ             with a quantized artifact as --weights (`dlc quantize`):
                    QuantizeLinear/DequantizeLinear around each quantized
                    conv/gemm, the format onnxruntime fuses into QLinearConv
    --train         one training step (forward, loss, backward, optimizer
                    update): the batch, the optimizer state, `lr` and `step` in;
                    `loss`, `param:<name>` and `state:<name>` out; the
                    parameters are inputs whose initializers hold their
                    current values

The exporter itself is `dlc.backends.onnx`; this module only builds the
graph and the weights a spec asks for.
"""
from __future__ import annotations

import dataclasses

from .errors import DlcError, DlcValueError


_KEPT_FOR_ONNX = ("fold_batchnorm", "fold_affine")


def _check_sized(g, what: str) -> None:
    for p in g.params:
        if p.type.symbols():
            sym = min(p.type.symbols())
            raise DlcValueError(f"parameter '{p.name}' has the symbolic size {p.type}: an ONNX initializer "
                                f"needs a fixed size", p.param.span, f"bind it: dlc export ... --bind {sym}=...")


def forward_graph(m, bind: dict | None = None, qdq: bool = True):
    """The eval graph `dlc export` writes: elaborated with the model's binds
    (symbolic elsewhere), through `m.opt`'s pipeline.  A quantization plan
    stops before `lower_int8`: QDQ in float, not dlc's integer kernels, with
    each quantized layer's bias as int32 at scale s_x * s_w (as lower_int8 has it)."""
    from .frontend.blocks import elaborate_model
    g = elaborate_model(m.module, m.name, "eval", {**m.bind, **(bind or {})})
    _check_sized(g, "eval")
    if m.opt.quant is not None and qdq:
        m = _copy_with(m, dataclasses.replace(m.opt, disable=tuple(m.opt.disable) + ("lower_int8",)))
    elif m.opt.quant is None:
        # a float model keeps its batch norms: ONNX runtimes fold them into the convs themselves, and the
        # file then holds BatchNormalization nodes with the spec's parameters rather than a folding in-graph
        m = _copy_with(m, dataclasses.replace(m.opt, disable=tuple(m.opt.disable) + _KEPT_FOR_ONNX))
    g = m.optimized(g, "numpy", bind=bind)
    if m.opt.quant is not None and qdq:
        from .backends.onnx.ops_quant import int32_biases
        int32_biases(g)
    return g


def fold_weights(g, weights: dict) -> dict:
    """{value id: (name, array)} for the values the weights alone determine
    (quantized weights and biases, their scales), computed once with the NumPy
    reference: in QDQ form each weight is an int8 initializer, the pattern
    onnxruntime fuses (it never folds a QuantizeLinear itself)."""
    from .backends.numpy.interpreter import Interpreter
    from .compiler.clone import node_uses
    from .compiler.hoist import weight_only_nodes
    from .compiler.ir import Graph
    # stop at dequantize_linear: QDQ keeps each weight's DequantizeLinear in the graph
    nodes, kept = [], set()
    for n in weight_only_nodes(g):
        if n.op.name == "dequantize_linear" or any(v is not None and v.id in kept for v in node_uses(n)):
            kept.update(o.id for o in n.outputs)
        else:
            nodes.append(n)
    hoisted = {id(n) for n in nodes}
    made = {o.id: (n, o) for n in nodes for o in n.outputs}
    needed: dict[int, object] = {}
    for n in g.nodes:
        if id(n) not in hoisted:
            needed.update({v.id: v for v in node_uses(n) if v.id in made})
    needed.update({v.id: v for v in g.outputs if v.id in made})
    if not needed:
        return {}
    vals = list(needed.values())
    sub = Graph("weights", params=list(g.params), nodes=nodes, outputs=vals,
                output_names=[f"v{i}" for i in range(len(vals))])
    outs, _ = Interpreter(sub).run({}, weights)
    roles = _qdq_roles(g, made)
    folded = {}
    for i, v in enumerate(vals):
        node = made[v.id][0]
        folded[v.id] = (f"{node.scope}.{roles.get(v.id, node.op.name)}".lstrip("."), outs[f"v{i}"])
    return folded


def _qdq_roles(g, made: dict) -> dict:
    """Names for folded values by their use: weight_quantized, weight_scale, act_scale, act_zero_point..."""
    roles = {}
    for n in g.nodes:
        if n.op.name not in ("quantize_linear", "dequantize_linear"):
            continue
        x = n.inputs[0]
        if x.id in made and made[x.id][0].op.name == "quantize_linear":
            what = "weight" if x.type.dtype.name == "i8" else "bias"
        elif n.op.name == "quantize_linear" and n.outputs[0].id in made:
            what = "weight" if n.outputs[0].type.dtype.name == "i8" else "bias"
        else:
            what = "act"
        if n.op.name == "quantize_linear" and n.outputs[0].id in made:
            roles[n.outputs[0].id] = f"{what}_quantized"
        for v, kind in zip(n.inputs[1:], ("scale", "zero_point")):
            if v is not None and v.id in made:
                roles.setdefault(v.id, f"{what}_{kind}")
    return roles


def _copy_with(m, opt):
    import copy
    m2 = copy.copy(m)
    m2.opt = opt
    m2.pass_records = []
    return m2


def train_graph(m, bind: dict | None = None, seed: int = 0):
    """The training-step graph of the model's train section (`compiler.training`)."""
    from .backends.protocol import StepPlan, fresh_optimizer_state
    from .frontend.blocks import elaborate_model
    from .frontend.train import train_settings
    tdef = next((t for t in m.module.trains if t.model == m.name), None)
    if tdef is None:
        raise DlcValueError(f"model '{m.name}' has no train section: --train exports its training step",
                            None, "add `train Model on data { loss = ...; optimizer = ... }`, or drop --train")
    b = {**m.bind, **(bind or {})}
    settings = train_settings(m.module, tdef, b)
    plan = StepPlan(spec=settings, model_graph=lambda: elaborate_model(m.module, m.name, "train", b),
                    weights={}, optimizer_state=None, seed=seed, bind=b, opt=m.opt, backend="numpy")
    prog = plan.step_program()
    _check_sized(prog.graph, "train")
    return prog.graph, fresh_optimizer_state(plan, prog.params)


def export_spec(path: str, output: str | None = None, *, model: str | None = None, bind: dict | None = None,
                weights_path: str | None = None, opset: int | None = None, train: bool = False, seed: int = 0,
                noise_inputs: bool = False, opt=None):
    """Export `path`'s model; returns (onnx.ModelProto, info dict).  Writes
    `output` atomically when given."""
    from .api import load
    from .backends.onnx import DEFAULT_OPSET, export_graph, save_model
    m = load(path, model, bind, opt=opt)
    if weights_path is not None:
        from .quant_artifact import weights_for
        m, weights = weights_for(m, weights_path)
    else:
        weights = m.init_weights(seed)
    if train:
        if m.opt.quant is not None:
            raise DlcError("--train exports the float training step; a quantized artifact has no training "
                           "graph", hint="pass the float weights, or drop --train")
        g, opt_state = train_graph(m, bind, seed)
    else:
        g, opt_state = forward_graph(m, bind), {}
    from . import __version__
    folded = fold_weights(g, weights) if m.opt.quant is not None and not train else None
    proto = export_graph(g, weights, opset=opset or DEFAULT_OPSET, noise_inputs=noise_inputs, source=path,
                         producer_version=__version__, trainable_inputs=train, extra_defaults=opt_state,
                         folded=folded)
    info = {"model": m.name, "mode": "train" if train else "eval", "qdq": m.opt.quant is not None and not train,
            "nodes": len(proto.graph.node), "initializers": len(proto.graph.initializer),
            "inputs": [i.name for i in proto.graph.input], "outputs": [o.name for o in proto.graph.output]}
    if output is not None:
        info["sha256"] = save_model(proto, output)
    return proto, info
