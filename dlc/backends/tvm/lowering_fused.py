"""TVM lowering of `fused` regions (`ops/fused.py`): each as one kernel.

Registered into `lowering.LOWERING` (imported by `lowering_seq`).  What each
kind becomes was decided by counting the kernels of the built module
(`relax.call_tir`s in ``main`` after `pipeline.prepare`) and timing them
(docs/passes/lowering.md has the figures):

* ``softmax`` whose body is the softmax (or log-softmax) pattern
  (`backends/fused_patterns.py`): dlc's own softmax lowering, topi's
  fast_softmax for float32 -- one kernel.  The body inlined is four kernels
  (max, exp, sum, divide: FuseOps does not join a reduction to what follows
  it), and 17x slower on [1, 12, 128, 128].
* ``layernorm`` written out (not a `layer_norm` op, which keeps its own
  overflow-safe lowering): the body as a private Relax function marked
  ``Primitive``, which FuseOps leaves alone and FuseTIR makes one PrimFunc --
  one kernel where the inlined body is three (two reductions each start a
  new group).  The body is computed as written, so the numbers are the
  body's; relax's `layer_norm` is not used: it computes the variance in one
  pass as E[x^2] - E[x]^2, which cancels badly when the mean is large.
* every other region (elementwise chains, conv/matmul epilogues, gelu, the
  optimizer update): the body inlined, which TVM's FuseOps already turns
  into one kernel, joined with the conv or matmul it follows (measured:
  conv2d + bias + residual + relu is one ``fused_conv2d_add_add1_relu``,
  linear + relu one ``fused_matmul_add_relu``, a GELU one kernel).  A
  Primitive function there would only stop FuseOps from joining the chain
  to its neighbours, and would hide a conv from the layout conversion.

A layernorm body that cannot be a standalone function (a random op in it,
whose drawn tensor is an input of ``main``; a dimension no operand's shape
defines) is inlined too.
"""
from __future__ import annotations

from ..fused_patterns import match_layernorm, match_softmax
from .lowering import _R, _op, arg_as, lowers, norm_axis, out_dtype
from .lowering_elementwise import softmax


def _softmax_region(low, node, args):
    body = node.body
    m = match_softmax(body, {b.id: v for b, v in zip(body.inputs, node.inputs)})
    if m is None or m.x.kind != "input":
        return None
    i = next(k for k, v in enumerate(body.inputs) if v is m.x)
    dt = out_dtype(node)
    x = arg_as(low, node, args, i, dt)
    axis = norm_axis(m.axis, m.x.type.rank)
    if m.log:
        return [low.emit(_op().nn.log_softmax(x, axis=axis))]
    return [softmax(low, x, axis, dt)]


def _primitive_function(low, node, args):
    """The body as a private ``Primitive`` Relax function, called once; None
    when it cannot stand alone (see the module doc)."""
    from .lowering import random_plan
    relax = _R()
    body = node.body
    if any(random_plan(n) is not None for n in body.walk()):
        return None
    saved = (low.bb, low.dim_vars, low.node)
    known = {gv.name_hint for gv, _ in low.bb.get().functions_items()}
    k = low.__dict__.get("_fused_regions", 0)
    name = f"fused_{node.attrs['kind']}{k}"
    while name in known:
        k += 1
        name = f"fused_{node.attrs['kind']}{k}"
    low.__dict__["_fused_regions"] = k + 1
    try:
        sb = relax.BlockBuilder(low.bb.get())
        low.bb, low.dim_vars = sb, {}
        params = [relax.Var(f"a{i}", low.value_type(v)) for i, v in enumerate(body.inputs)]
        with sb.function(name, params, attrs={"Primitive": True}, private=True):
            with sb.dataflow():
                env = {v.id: p for v, p in zip(body.inputs, params)}
                low.lower_nodes(body, env)
                outs = [env[v.id] for v in body.outputs]
                out = sb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
            gv = sb.emit_func_output(out)
        mod = sb.get()
        try:
            if relax.analysis.well_formed(mod) is False:
                return None
        except Exception:  # noqa: BLE001 - e.g. a dimension no parameter defines: inline instead
            return None
    finally:
        low.bb, low.dim_vars, low.node = saved
    fresh = [(g, f) for g, f in mod.functions_items() if g.name_hint not in known]
    for g, f in fresh:
        low.bb.update_func(g, f)
    call = low.emit(relax.Call(gv, list(args)))
    if len(body.outputs) == 1:
        return [call]
    return [low.emit(relax.TupleGetItem(call, i)) for i in range(len(body.outputs))]


@lowers("fused")
def _fused(low, node, args, env):
    kind = node.attrs["kind"]
    outs = None
    if kind == "softmax":
        outs = _softmax_region(low, node, args)
    elif kind == "layernorm":
        body = node.body
        m = match_layernorm(body, {b.id: v for b, v in zip(body.inputs, node.inputs)})
        if m is not None and not any(n.op.name == "layer_norm" for n in body.nodes):
            outs = _primitive_function(low, node, args)
    if outs is None:
        outs = low.decomposed(node, args)      # the body inlined: FuseOps makes it one kernel
    low.node = node
    return outs
