"""Insert quantize/dequantize pairs (QDQ) around the layers a QuantPlan quantizes.

For every site of `quant_sites(g)` (conv2d and dense layers, compiler/quant/sites.py)
not in `plan.float_layers`:

    x ─ quantize_linear(s_x, zp_x) ─ dequantize_linear ─┐
    w ─ quantize_linear(s_w, int8, axis 0) ─ dequantize ─┼─ conv2d/linear (+ bias) [─ relu] ─ quantize_linear(s_y, zp_y) ─ dequantize ─ ...
                                                   bias ─┘

s_x/zp_x and s_y/zp_y come from `plan.ranges["<layer>:in"]` and `["<layer>:out"]`
(`scales.activation_qparams`: uint8, asymmetric, per tensor) as scalar `full`
constants; s_w is computed from the weight in the graph (`scales.weight_scale_ir`:
max|w| / 127 per output channel with `plan.per_channel`, else per tensor), so it
is a weight-only value that backends compute once per set of weights.  The
result still computes in float (the "fake-quant" QDQ form, as onnxruntime's
QDQ models): `lower_int8` then turns each pattern into an integer op.

Runs only with `PipelineOptions.quant`, in eval mode, after fold_batchnorm (so
a batch norm's scale is part of the quantized weight).  A site without a range
is an error at the layer's `.dln` line naming the site.
"""
from __future__ import annotations

from ...errors import DlcError
from ..builder import Builder
from ..ir import Graph, Value
from ..quant.scales import activation_qparams, weight_scale_ir
from ..quant.sites import Site, quant_sites
from ._folding import Splice
from .pipeline import PassContext, register_pass
from .rewrite import replace_uses


@register_pass("quantize", level=1, modes=("eval",), when=lambda opts: opts.quant is not None, requires=("fold_batchnorm",),
               summary="insert quantize/dequantize pairs around conv2d/dense layers from a QuantPlan")
def quantize(g: Graph, ctx: PassContext) -> None:
    plan = ctx.quant
    sites = quant_sites(g)
    unknown = sorted(set(plan.float_layers) - {s.name for s in sites})
    if unknown:
        raise DlcError(f"float_layers names {', '.join(repr(n) for n in unknown)}, not a quantizable layer",
                       g.span, "quantizable layers: " + (", ".join(s.name for s in sites) or "none"))
    for site in sites:
        ctx.node = site.node
        if site.name in plan.float_layers:
            ctx.count("kept_float")
            continue
        r_in, r_out = _range(plan, site.in_key, site), _range(plan, site.out_key, site)
        _quantize_site(g, site, r_in, r_out, plan.per_channel)
        ctx.count(site.kind)


def _range(plan, key: str, site: Site) -> tuple[float, float]:
    if key not in plan.ranges:
        raise DlcError(f"the quantization plan has no range for '{key}' ({site.kind} layer '{site.name}')",
                       site.node.span, "calibrate this model again (dlc quantize), or list the layer in "
                                       "float_layers to keep it in fp32")
    return plan.ranges[key]


def qdq(b: Builder, v: Value, lo: float, hi: float) -> Value:
    """dequantize(quantize(v)) with the uint8 parameters of the range [lo, hi]."""
    scale, zp = activation_qparams(lo, hi)
    s, z = b.const(float(scale)), b.const(zp, "uint8")
    return b.op("dequantize_linear", b.op("quantize_linear", v, s, z, dtype="uint8"), s, z)


def _quantize_site(g: Graph, site: Site, r_in, r_out, per_channel: bool) -> None:
    n = site.node
    axis = 0 if per_channel else None
    with Splice(g, n, n.span, n.scope) as b:
        x = qdq(b, n.inputs[0], *r_in)       # (an earlier site may have put its output pair here)
        w = site.weight
        sw = weight_scale_ir(b, w, per_channel)
        wq = b.op("quantize_linear", w, sw, None, axis=axis, dtype="int8")
        wdq = b.op("dequantize_linear", wq, sw, None, axis=axis)
    n.inputs = (x, wdq) + tuple(n.inputs[2:])
    # the output's pair goes right after the value's producer (the relu epilogue or the layer)
    producer = site.relu or n
    start = len(g.nodes)
    y = qdq(Builder(g, n.span, n.scope), site.output, *r_out)
    new = g.nodes[start:]
    del g.nodes[start:]
    at = g.nodes.index(producer) + 1
    g.nodes[at:at] = new
    q_node = new[-2]                       # quantize_linear(site.output, ...)
    replace_uses(g, {site.output.id: y})
    q_node.inputs = (site.output,) + tuple(q_node.inputs[1:])


def calibration_graph(g: Graph, opts, *, backend: str = "numpy", target: str = "cpu",
                      dims: dict | None = None) -> Graph:
    """A copy of `g` as the pipeline with `opts` (and a quantization plan) leaves it just before
    `quantize`: the graph whose `quant_sites` values calibration must observe (the ranges then
    apply to exactly the values the quantize pass sees).  `g` itself is left unchanged."""
    import copy
    import dataclasses

    from ..quant.plan import QuantPlan
    from . import PIPELINE
    from .pipeline import PipelineOptions, run_pipeline, selected_passes
    probe = dataclasses.replace(opts, quant=opts.quant if opts.quant is not None else QuantPlan())
    stop = PIPELINE.index("quantize")
    names = tuple(p.name for p in selected_passes(probe, g.mode) if PIPELINE.index(p.name) < stop)
    h = copy.deepcopy(g)
    run_pipeline(h, PipelineOptions(level=opts.level, passes=names), backend=backend, target=target, dims=dims)
    return h
