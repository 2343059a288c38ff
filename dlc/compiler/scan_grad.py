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

Weight gradients are hoisted out of the loop: a captured matrix used in the
body only as the weight of `linear` (or the right operand of `matmul`,
directly or through `transpose`) and a captured bias used only in `linear`
get no accumulator.  The backward body instead stacks the cotangent G_t of
that product and its input U_t, and after the loop one matmul gives
dW = sum_t G_t^T U_t (db = sum_t G_t) -- as cuDNN does, rather than a small
outer product and an add per step.
"""
from __future__ import annotations

from .builder import Builder
from .clone import clone_into, node_uses, prune
from .ir import Graph, Value, free_values
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


def _hoistable(rg: Graph, caps: list[Value], outs: list[Value], axis: int) -> dict[int, list]:
    """Captured values whose gradient is a sum of per-step products: {capture id: [(kind, node)]}.

    kind "wT": the capture is K with z = u @ K^T (linear weight, or matmul rhs via transpose(K));
    "w": z = u @ K (matmul rhs); "b": linear bias.  z must keep its feature axis last when
    stacked along `axis`.  A capture used any other way (or in a nested body, or returned)
    is accumulated in a carry instead.
    """
    ids = {k.id for k in caps}
    bad = {v.id for v in outs if v.id in ids}
    value_uses: dict[int, list] = {}
    for n in rg.nodes:
        for pos, v in enumerate(n.inputs):
            if v is not None:
                value_uses.setdefault(v.id, []).append((n, pos))
        if n.body is not None:
            bad.update(v.id for v in free_values(n.body) if v.id in ids)
    out_ids = {v.id for v in outs}

    def product_ok(n, u):
        z = n.outputs[0]
        return (u is not None and u.id not in ids and z.type.rank >= 1 and axis < z.type.rank
                and z.type.dtype.is_float)

    plan: dict[int, list] = {}
    for k in caps:
        if k.id in bad or k.type.rank not in (1, 2):
            continue
        terms, ok = [], bool(value_uses.get(k.id))
        for n, pos in value_uses.get(k.id, []):
            name = n.op.name
            if name == "linear" and pos == 1 and k.type.rank == 2 and product_ok(n, n.inputs[0]):
                terms.append(("wT", n))
            elif name == "linear" and pos == 2 and product_ok(n, n.inputs[0]) and n.inputs[1].id != k.id:
                terms.append(("b", n))
            elif (name == "matmul" and pos == 1 and k.type.rank == 2 and n.inputs[0].type.rank >= 2
                  and product_ok(n, n.inputs[0])):
                terms.append(("w", n))
            elif (name == "transpose" and k.type.rank == 2 and tuple(n.attrs["axes"]) == (1, 0)
                  and n.outputs[0].id not in out_ids and value_uses.get(n.outputs[0].id)):
                for m, mpos in value_uses[n.outputs[0].id]:
                    if (m.op.name == "matmul" and mpos == 1 and m.inputs[0].type.rank >= 2
                            and m.inputs[0].id != n.outputs[0].id and product_ok(m, m.inputs[0])):
                        terms.append(("wT", m))
                    else:
                        ok = False
            else:
                ok = False
        if ok and terms:
            plan[k.id] = terms
    return plan


def _hoisted_grad(b: Builder, kind: str, G: Value, U: Value | None, k: Value) -> Value:
    """The gradient of capture `k` from the stacked per-step products (see `_hoistable`):
    a sum over every axis but the features, as one matmul."""
    g2 = b.op("reshape", G, shape=(-1, G.type.shape[-1]))
    if kind == "b":
        d = b.op("sum", g2, axis=0, keepdims=False)
    else:
        u2 = b.op("reshape", U, shape=(-1, U.type.shape[-1]))
        if kind == "wT":  # K is (out, in): G^T U
            d = b.op("matmul", b.op("transpose", g2, axes=(1, 0)), u2)
        else:  # K is (in, out): U^T G
            d = b.op("matmul", b.op("transpose", u2, axes=(1, 0)), g2)
    return d if d.type == k.type else b.op("reshape", d, shape=k.type.shape)


def scan_vjp(b: Builder, node, g: list, hoist: bool = True):
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
    plan = _hoistable(rg, caps, outs, axis) if hoist else {}
    zs = list({n.outputs[0].id: n.outputs[0] for terms in plan.values() for _, n in terms}.values())
    acc_caps = [k for k in caps if k.id not in plan]
    wrt = [c_t[i] for i in fc] + [x_t[i] for i in fx] + acc_caps + zs
    grads = vjp(rg, [outs[i] for i in fc] + [outs[nc + i] for i in gyi], gc_in + gy_t, wrt, span)
    d_c = grads[:len(fc)]
    d_x = grads[len(fc):len(fc) + len(fx)]
    d_k = grads[len(fc) + len(fx):len(fc) + len(fx) + len(acc_caps)]
    g_z = {z.id: gz for z, gz in zip(zs, grads[len(fc) + len(fx) + len(acc_caps):])}

    # per-step outputs for the hoisted products: (kind, capture, index of G_t, index of U_t)
    stacked: dict[int, int] = {}
    per_step: list[Value] = []

    def stack(v):
        if v.id not in stacked:
            stacked[v.id] = len(per_step)
            per_step.append(v)
        return stacked[v.id]

    # U_t that is a step's slice of a sequence or input carry is read from that stack instead
    x_pos = {v.id: i for i, v in enumerate(x_t)}
    c_pos = {v.id: i for i, v in enumerate(c_in)}
    hoisted = []
    for k in caps:
        for kind, n in plan.get(k.id, []):
            gz = g_z[n.outputs[0].id]
            if gz is None:
                continue
            u = n.inputs[0]
            src = (None if kind == "b" else ("seq", x_pos[u.id]) if u.id in x_pos else
                   ("carry", c_pos[u.id]) if u.id in c_pos else ("step", stack(u)))
            hoisted.append((kind, k, stack(gz), src))

    acc = [(k, d) for k, d in zip(acc_caps, d_k) if d is not None]
    gk_in = [rg.add_input(f"g_{k.name or 'capture'}", k.type) for k, _ in acc]
    new_gc = [d if d is not None else zeros_like(rb, c_t[i]) for i, d in zip(fc, d_c)]
    new_gk = [rb.op("add", gin, d) for gin, (_, d) in zip(gk_in, acc)]
    xo = [(i, d) for i, d in zip(fx, d_x) if d is not None]
    result: list[Value | None] = [None] * len(node.inputs)
    if not any(d is not None for d in d_c) and not acc and not xo and not hoisted:
        return result, {}
    rg.outputs = new_gc + new_gk + [d for _, d in xo] + per_step
    prune(rg)
    used = {v.id for v in rg.outputs}
    for n in rg.nodes:
        used.update(v.id for v in node_uses(n))
    # the input carries the backward step reads (or a hoisted product needs)
    kept = [i for i in range(nc) if c_in[i].id in used or any(src == ("carry", i) for *_, src in hoisted)]
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
    base = nce + len(xo)
    for kind, k, gi, src in hoisted:
        U = (None if src is None else seqs[src[1]] if src[0] == "seq" else
             stacked_c[kept.index(src[1])] if src[0] == "carry" else res[base + src[1]])
        d = _hoisted_grad(ob, kind, res[base + gi], U, k)
        extra[k.id] = d if k.id not in extra else ob.op("add", extra[k.id], d)
    return result, extra
