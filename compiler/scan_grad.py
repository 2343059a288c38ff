"""The VJP of `scan`: backpropagation through time, as IR.

For a forward scan with carries c, sequences xs, body (c_t, x_t) -> (c_{t+1}, y_t)
and captured values k (parameters and other outer values the body uses):

1. recompute: a copy of the scan whose body also returns its *input* carries,
   so the node stacks c_t for every step (the forward values the backward
   step needs; the original node is left untouched);
2. a scan in the opposite direction whose body is the VJP of the forward
   body: the body is cloned into a new graph (inputs: carry cotangent gc,
   captured-value accumulators gk, c_t, x_t, gy_t) and differentiated there
   with `autodiff.vjp`.  It carries gc (initialised with the cotangent of the
   final carries, zeros where there is none) and gk += dk (initialised with
   zeros), and stacks gx_t.

The results are the gradients wrt the initial carries (final gc), the
sequences (stacked gx) and the captured values (final gk, returned to
`autodiff.vjp` as `{captured.id: gradient}`).  Both new scans capture outer
values freely; everything is ordinary IR, so the result can be lowered by any
backend and differentiated again (the VJP of the VJP scan is this same rule).
Nested scans in the body are handled by the recursion.
"""
from __future__ import annotations

from .builder import Builder
from .clone import clone_into, free_values, node_uses, prune
from .ir import Graph, Value
from .ops import OPS
from .ops.vjp_util import zeros_like


def maybe_differentiable(values: list[Value]) -> list[bool]:
    """Whether each value may depend on a graph input or parameter through differentiable ops.

    False for integer/bool values and for values computed only from constants
    (or through non-differentiable ops): their gradient is never wanted, so the
    backward scan need not accumulate one.
    """
    memo: dict[int, bool] = {}

    def check(v: Value) -> bool:
        stack = [v]
        while stack:
            u = stack[-1]
            if u.id in memo:
                stack.pop()
                continue
            if not u.type.dtype.is_float:
                memo[u.id] = False
                stack.pop()
                continue
            if u.producer is None:  # graph input, body input, parameter or buffer
                memo[u.id] = True
                stack.pop()
                continue
            node = u.producer
            if node.op.nondiff:
                memo[u.id] = False
                stack.pop()
                continue
            deps = [w for w in node.inputs if w is not None]
            if node.body is not None:
                deps += free_values(node.body)
            pending = [w for w in deps if w.id not in memo]
            if pending:
                stack.extend(pending)
                continue
            res = any(memo[w.id] for w in deps)
            for o in node.outputs:
                memo[o.id] = res
            stack.pop()
        return memo[v.id]

    return [check(v) for v in values]


def scan_vjp(b: Builder, node, g: list):
    from .autodiff import vjp

    attrs = node.attrs
    nc, axis, reverse = attrs["num_carry"], attrs["axis"], bool(attrs["reverse"])
    body = node.body
    parent = b.graph
    span, scope = b.span, b.scope
    carries0, seqs = list(node.inputs[:nc]), list(node.inputs[nc:])
    ny = len(body.outputs) - nc
    g_c, g_y = list(g[:nc]), list(g[nc:])
    caps = free_values(body)
    caps = [v for v, ok in zip(caps, maybe_differentiable(caps)) if ok]

    # 1. the backward body: the VJP of one step
    fc = [i for i in range(nc) if body.inputs[i].type.dtype.is_float]  # carries with cotangents
    fx = [i for i in range(len(seqs)) if body.inputs[nc + i].type.dtype.is_float]
    gyi = [i for i in range(ny) if g_y[i] is not None]

    def stackable(t):  # a carry of rank < axis cannot be stacked along `axis`: add leading unit axes
        return t if t.rank >= axis else t.with_shape((1,) * (axis - t.rank) + t.shape)

    rg = Graph(f"{body.name}.grad", mode=body.mode, dims=dict(body.dims), span=body.span, parent=parent)
    gc_in = [rg.add_input(f"g_{body.inputs[i].name}", body.inputs[i].type) for i in fc]
    c_in = [rg.add_input(v.name, stackable(v.type)) for v in body.inputs[:nc]]
    x_t = [rg.add_input(v.name, v.type) for v in body.inputs[nc:]]
    gy_t = [rg.add_input(f"g_y{i}", body.outputs[nc + i].type) for i in gyi]
    rb = Builder(rg, span, scope)
    c_t = [c if c.type == v.type else rb.op("reshape", c, shape=v.type.shape)
           for c, v in zip(c_in, body.inputs[:nc])]
    outs = clone_into(body, rg, {o.id: n for o, n in zip(body.inputs, c_t + x_t)})
    wrt = [c_t[i] for i in fc] + [x_t[i] for i in fx] + caps
    grads = vjp(rg, [outs[i] for i in fc] + [outs[nc + i] for i in gyi], gc_in + gy_t, wrt, span)
    d_c = grads[:len(fc)]
    d_x = grads[len(fc):len(fc) + len(fx)]
    d_k = grads[len(fc) + len(fx):]

    acc = [(k, d) for k, d in zip(caps, d_k) if d is not None]
    gk_in = [rg.add_input(f"g_{k.name or 'capture'}", k.type) for k, _ in acc]
    new_gc = [d if d is not None else zeros_like(rb, c_t[i]) for i, d in zip(fc, d_c)]
    new_gk = [rb.op("add", gin, d) for gin, (_, d) in zip(gk_in, acc)]
    xo = [(i, d) for i, d in zip(fx, d_x) if d is not None]
    result: list[Value | None] = [None] * len(node.inputs)
    if not any(d is not None for d in d_c) and not acc and not xo:
        return result, {}
    rg.outputs = new_gc + new_gk + [d for _, d in xo]
    prune(rg)
    used = {v.id for v in rg.outputs}
    for n in rg.nodes:
        used.update(v.id for v in node_uses(n))
    kept = [i for i in range(nc) if c_in[i].id in used]  # the input carries the backward step reads
    rg.inputs = gc_in + gk_in + [c_in[i] for i in kept] + x_t + gy_t

    # 2. recompute the forward, stacking each step's input carries (those the backward step reads)
    stacked_c: list[Value] = []
    if kept:
        fb = Graph(f"{body.name}.fwd", mode=body.mode, dims=dict(body.dims), span=body.span, parent=parent)
        ins = [fb.add_input(v.name, v.type) for v in body.inputs]
        fouts = clone_into(body, fb, {o.id: n for o, n in zip(body.inputs, ins)})
        fbb = Builder(fb, span, scope)
        fb.outputs = fouts[:nc] + [ins[i] if ins[i].type == c_in[i].type else
                                   fbb.op("reshape", ins[i], shape=c_in[i].type.shape) for i in kept]
        prune(fb)
        res = parent.add_node(OPS["scan"], list(node.inputs), dict(attrs), span, scope, body=fb)
        stacked_c = res[nc:]

    # 3. the backward scan, in the opposite direction
    ob = Builder(parent, span, scope)
    init_gc = [g_c[i] if g_c[i] is not None else zeros_like(ob, carries0[i]) for i in fc]
    init_gk = [zeros_like(ob, k) for k, _ in acc]
    operands = init_gc + init_gk + stacked_c + seqs + [g_y[i] for i in gyi]
    nce = len(fc) + len(acc)
    res = parent.add_node(OPS["scan"], operands, {"num_carry": nce, "axis": axis, "reverse": not reverse},
                          span, scope, body=rg)
    for j, i in enumerate(fc):
        result[i] = res[j]
    for j, (i, _) in enumerate(xo):
        result[nc + i] = res[nce + j]
    extra = {k.id: res[len(fc) + j] for j, (k, _) in enumerate(acc)}
    return result, extra
