"""dlc's own optimisation passes over the IR, and the pipeline that orders them.

Each pass lives in its own module here and registers itself with
`@register_pass` (see `pipeline.py`); every module of this package is
imported below, so adding a pass is adding a module and naming it in
`ORDER`.  The backends take the graph the pipeline leaves.

    from dlc.compiler.passes import run_pipeline, PipelineOptions
    g, records, ctx = run_pipeline(graph, PipelineOptions(level=2), backend="tvm")
"""
from __future__ import annotations

import importlib
import pkgutil

from .pipeline import (DEFAULT_LEVEL, LEVELS, PASSES, PassContext, PassDef, PassError, PassRecord,  # noqa: F401
                       PipelineOptions, check_pass_name, register_pass, run_pipeline, selected_passes)

# The pipeline order.  Simplify first (so later passes see canonical IR),
# fold batch norms and affine ops into their convolutions, choose the
# layout, then form fused regions last: fusion sees the final graph.
ORDER = [
    "canonicalize",       # algebraic identities, eval-mode dropout, transpose/reshape chains
    "fold_constants",     # constant folding, dimension arithmetic included
    "cse",                # common subexpressions (forward and backward alike)
    "dce",                # dead code
    "fold_batchnorm",     # eval batch norm into the preceding conv/dense
    "fold_affine",        # a per-channel scale/shift into the next conv, where exact
    "quantize",           # with a QuantPlan: quantize/dequantize around conv2d/dense (compiler/quant)
    "lower_int8",         # with a QuantPlan: dequantize -> conv/dense -> quantize as qconv2d/qdense
    "autocast",           # --precision bf16|fp16: low-precision convs/matmuls, fp32 statistics
    "layout",             # NCHW -> NHWC where the target wants it
    "attention",          # QK^T, scale, mask, softmax, .V -> one attention op
    "fuse_optimizer",     # one fused update per parameter
    "fusion",             # fused regions: elementwise chains, epilogues, norms
]

_SKIP = {"pipeline", "rewrite", "regions"}
for _m in pkgutil.iter_modules(__path__):
    if _m.name not in _SKIP and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

for _name in PASSES:
    if _name not in ORDER:
        raise RuntimeError(f"pass {_name} is registered but not placed in passes.ORDER")

PIPELINE = [n for n in ORDER if n in PASSES]
