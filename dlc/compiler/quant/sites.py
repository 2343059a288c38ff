"""Where a model can be quantized: its conv2d and dense (linear) layers.

    for site in quant_sites(g):
        site.name          # the layer path, e.g. "layer1.0.conv1"
        site.in_key        # "layer1.0.conv1:in": the range of site.input
        site.out_key       # "layer1.0.conv1:out": the range of site.output

A site is a top-level `conv2d` or `linear` node of an fp32 graph whose weight
(and bias) depend on the weights alone (parameters, or weights folded by
fold_batchnorm), whose padding is symmetric and explicit.  `input` is the
activation it reads; `output` is what it produces after its epilogue: the
result of the `relu` that is the layer's only reader, else the layer's own
result.  Observing exactly these values during calibration gives the ranges
the quantize pass reads, provided calibration runs the graph as the pipeline
leaves it just before `quantize` (`passes.quantize.calibration_graph` builds
that graph).

Sites are named by the layer's scope (`Node.scope`, the `.dln` layer path);
a layer applied more than once gets "#1", "#2"... on its later
applications, a node outside any layer "<op>@<line>".
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import Graph, Node, Value
from ..ops.conv import conv_pads
from ..types import DType

SITE_OPS = {"conv2d": "conv2d", "linear": "dense"}


@dataclass
class Site:
    name: str
    kind: str                  # "conv2d" or "dense"
    node: Node                 # the conv2d / linear node
    input: Value               # the activation it reads (observe for "<name>:in")
    output: Value              # its result after the relu epilogue (observe for "<name>:out")
    relu: Node | None          # the relu epilogue, if any

    @property
    def in_key(self) -> str:
        return f"{self.name}:in"

    @property
    def out_key(self) -> str:
        return f"{self.name}:out"

    @property
    def weight(self) -> Value:
        return self.node.inputs[1]

    @property
    def bias(self) -> Value | None:
        return self.node.inputs[2] if len(self.node.inputs) > 2 else None


def symmetric_padding(node: Node) -> tuple[int, int] | None:
    """A conv2d's (pad_h, pad_w) when each axis pads equally on both sides, else None."""
    a = node.attrs
    w = node.inputs[1].type
    st, dil = a["stride"], a["dilation"]
    st = tuple(st) if isinstance(st, (tuple, list)) else (st, st)
    dil = tuple(dil) if isinstance(dil, (tuple, list)) else (dil, dil)
    try:
        pads = conv_pads(a["padding"], 2, w.shape[2:], dil, st)
    except ValueError:
        return None
    if any(lo != hi for lo, hi in pads):
        return None
    return pads[0][0], pads[1][0]


def _eligible(n: Node, weights) -> bool:
    if n.op.name not in SITE_OPS or n.inputs[0].type.dtype != DType.f32:
        return False
    if n.inputs[1].type.dtype != DType.f32 or not weights(n.inputs[1]):
        return False
    bias = n.inputs[2] if len(n.inputs) > 2 else None
    if bias is not None and (bias.type.dtype != DType.f32 or not weights(bias)):
        return False
    if weights(n.inputs[0]):
        return False                         # a layer on constants only: nothing to calibrate
    return n.op.name != "conv2d" or symmetric_padding(n) is not None


def quant_sites(g: Graph) -> list[Site]:
    """The quantizable layers of `g` in graph order, with the values to observe."""
    # (imported here: the passes package imports this module while it loads)
    from ..passes._folding import WeightOnly
    from ..passes.rewrite import escaping, users
    weights = WeightOnly()
    uses = users(g)
    out_of_graph = escaping(g)
    seen: dict[str, int] = {}
    sites = []
    for n in g.nodes:
        if not _eligible(n, weights):
            continue
        base = n.scope or f"{n.op.name}@{n.span.line if n.span else len(sites)}"
        k = seen.get(base, 0)
        seen[base] = k + 1
        name = base if k == 0 else f"{base}#{k}"
        y = n.outputs[0]
        relu = None
        readers = uses.get(y.id, [])
        if len(readers) == 1 and readers[0].op.name == "relu" and y.id not in out_of_graph:
            relu = readers[0]
        sites.append(Site(name, SITE_OPS[n.op.name], n, n.inputs[0], relu.outputs[0] if relu else y, relu))
    return sites


def observed_values(g: Graph) -> dict[str, Value]:
    """Range key ("<layer>:in" / "<layer>:out") -> the value of `g` to observe for it."""
    out: dict[str, Value] = {}
    for s in quant_sites(g):
        out[s.in_key] = s.input
        out[s.out_key] = s.output
    return out
