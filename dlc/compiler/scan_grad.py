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
    """The VJP of scan `node` (see the module's docstring): the gradients of its
    operands and, as `{captured.id: gradient}`, of the values its body captures."""
    s = _ScanVJP(b, node, g, hoist)
    s.step_gradients()
    s.hoisted_products()
    if not s.finish_step():
        return [None] * len(node.inputs), {}
    s.recompute_forward()
    return s.backward_scan()


class _ScanVJP:
    """The pieces of one scan's VJP, built in order by `scan_vjp`: the backward
    step's graph `rg` (1), the forward recomputed with stacked input carries (2)
    and the backward scan over `rg` (3)."""

    def __init__(self, b: Builder, node, g: list, hoist: bool):
        attrs = node.attrs
        self.node, self.hoist = node, hoist
        self.nc, self.axis, self.reverse = attrs["num_carry"], attrs["axis"], bool(attrs["reverse"])
        self.body = body = node.body
        self.parent = b.graph
        self.span, self.scope = b.span, b.scope
        nc = self.nc
        self.carries0, self.seqs = list(node.inputs[:nc]), list(node.inputs[nc:])
        ny = len(body.outputs) - nc
        self.g_c, self.g_y = list(g[:nc]), list(g[nc:])
        caps = free_values(body)
        self.caps = [v for v, ok in zip(caps, maybe_differentiable(caps)) if ok]
        self.fc = [i for i in range(nc) if body.inputs[i].type.dtype.is_float]  # carries with cotangents
        self.fx = [i for i in range(len(self.seqs)) if body.inputs[nc + i].type.dtype.is_float]
        self.gyi = [i for i in range(ny) if self.g_y[i] is not None]

    def step_gradients(self) -> None:
        """1. the backward body: the VJP of one step, differentiated in a clone of the body."""
        from .autodiff import vjp
        body, nc, axis = self.body, self.nc, self.axis
        fc, fx, gyi = self.fc, self.fx, self.gyi

        def stackable(t):  # a carry of rank < axis cannot be stacked along `axis`: add leading unit axes
            return t if t.rank >= axis else t.with_shape((1,) * (axis - t.rank) + t.shape)

        rg = Graph(f"{body.name}.grad", mode=body.mode, dims=dict(body.dims), span=body.span, parent=self.parent)
        self.gc_in = [rg.add_input(f"g_{body.inputs[i].name}", body.inputs[i].type) for i in fc]
        self.c_in = [rg.add_input(v.name, stackable(v.type)) for v in body.inputs[:nc]]
        self.x_t = x_t = [rg.add_input(v.name, v.type) for v in body.inputs[nc:]]
        self.gy_t = [rg.add_input(f"g_y{i}", body.outputs[nc + i].type) for i in gyi]
        rb = Builder(rg, self.span, self.scope)
        self.rg, self.rb = rg, rb
        self.c_t = c_t = [c if c.type == v.type else rb.op("reshape", c, shape=v.type.shape)
                          for c, v in zip(self.c_in, body.inputs[:nc])]
        outs = clone_into(body, rg, {o.id: n for o, n in zip(body.inputs, c_t + x_t)})
        self.plan = plan = _hoistable(rg, self.caps, outs, axis) if self.hoist else {}
        zs = list({n.outputs[0].id: n.outputs[0] for terms in plan.values() for _, n in terms}.values())
        self.acc_caps = [k for k in self.caps if k.id not in plan]
        wrt = [c_t[i] for i in fc] + [x_t[i] for i in fx] + self.acc_caps + zs
        grads = vjp(rg, [outs[i] for i in fc] + [outs[nc + i] for i in gyi], self.gc_in + self.gy_t, wrt,
                    self.span)
        n_c, n_x, n_k = len(fc), len(fc) + len(fx), len(fc) + len(fx) + len(self.acc_caps)
        self.d_c, self.d_x, self.d_k = grads[:n_c], grads[n_c:n_x], grads[n_x:n_k]
        self.g_z = {z.id: gz for z, gz in zip(zs, grads[n_k:])}

    def hoisted_products(self) -> None:
        """The per-step outputs for the hoisted products: `hoisted` holds
        (kind, capture, index of G_t, where U_t is), `per_step` what the step stacks."""
        stacked: dict[int, int] = {}
        per_step: list[Value] = []

        def stack(v):
            if v.id not in stacked:
                stacked[v.id] = len(per_step)
                per_step.append(v)
            return stacked[v.id]

        # U_t that is a step's slice of a sequence or input carry is read from that stack instead
        x_pos = {v.id: i for i, v in enumerate(self.x_t)}
        c_pos = {v.id: i for i, v in enumerate(self.c_in)}
        hoisted = []
        for k in self.caps:
            for kind, n in self.plan.get(k.id, []):
                gz = self.g_z[n.outputs[0].id]
                if gz is None:
                    continue
                u = n.inputs[0]
                src = (None if kind == "b" else ("seq", x_pos[u.id]) if u.id in x_pos else
                       ("carry", c_pos[u.id]) if u.id in c_pos else ("step", stack(u)))
                hoisted.append((kind, k, stack(gz), src))
        self.per_step, self.hoisted = per_step, hoisted

    def finish_step(self) -> bool:
        """The backward step's outputs and inputs; False when no gradient flows through the scan."""
        rg, rb, nc = self.rg, self.rb, self.nc
        self.acc = acc = [(k, d) for k, d in zip(self.acc_caps, self.d_k) if d is not None]
        gk_in = [rg.add_input(f"g_{k.name or 'capture'}", k.type) for k, _ in acc]
        new_gc = [d if d is not None else zeros_like(rb, self.c_t[i]) for i, d in zip(self.fc, self.d_c)]
        new_gk = [rb.op("add", gin, d) for gin, (_, d) in zip(gk_in, acc)]
        self.xo = xo = [(i, d) for i, d in zip(self.fx, self.d_x) if d is not None]
        if not any(d is not None for d in self.d_c) and not acc and not xo and not self.hoisted:
            return False
        rg.outputs = new_gc + new_gk + [d for _, d in xo] + self.per_step
        prune(rg)
        used = {v.id for v in rg.outputs}
        for n in rg.nodes:
            used.update(v.id for v in node_uses(n))
        # the input carries the backward step reads (or a hoisted product needs)
        self.kept = [i for i in range(nc) if self.c_in[i].id in used
                     or any(src == ("carry", i) for *_, src in self.hoisted)]
        rg.inputs = self.gc_in + gk_in + [self.c_in[i] for i in self.kept] + self.x_t + self.gy_t
        return True

    def recompute_forward(self) -> None:
        """2. recompute the forward, stacking each step's input carries (those the backward step reads)."""
        self.stacked_c: list[Value] = []
        if not self.kept:
            return
        body, nc, c_in, kept = self.body, self.nc, self.c_in, self.kept
        fb = Graph(f"{body.name}.fwd", mode=body.mode, dims=dict(body.dims), span=body.span, parent=self.parent)
        ins = [fb.add_input(v.name, v.type) for v in body.inputs]
        fouts = clone_into(body, fb, {o.id: n for o, n in zip(body.inputs, ins)})
        fbb = Builder(fb, self.span, self.scope)
        fb.outputs = fouts[:nc] + [ins[i] if ins[i].type == c_in[i].type else
                                   fbb.op("reshape", ins[i], shape=c_in[i].type.shape) for i in kept]
        prune(fb)
        res = self.parent.add_node(OPS["scan"], list(self.node.inputs), dict(self.node.attrs), self.span,
                                   self.scope, body=fb)
        self.stacked_c = res[nc:]

    def backward_scan(self):
        """3. the backward scan, in the opposite direction; returns (operand gradients, capture gradients)."""
        nc, fc, acc, xo, seqs = self.nc, self.fc, self.acc, self.xo, self.seqs
        parent, span, scope = self.parent, self.span, self.scope
        ob = Builder(parent, span, scope)
        init_gc = [self.g_c[i] if self.g_c[i] is not None else zeros_like(ob, self.carries0[i]) for i in fc]
        init_gk = [zeros_like(ob, k) for k, _ in acc]
        operands = init_gc + init_gk + self.stacked_c + seqs + [self.g_y[i] for i in self.gyi]
        nce = len(fc) + len(acc)
        res = parent.add_node(OPS["scan"], operands,
                              {"num_carry": nce, "axis": self.axis, "reverse": not self.reverse},
                              span, scope, body=self.rg)
        result: list[Value | None] = [None] * len(self.node.inputs)
        for j, i in enumerate(fc):
            result[i] = res[j]
        for j, (i, _) in enumerate(xo):
            result[nc + i] = res[nce + j]
        extra = {k.id: res[len(fc) + j] for j, (k, _) in enumerate(acc)}
        base = nce + len(xo)
        for kind, k, gi, src in self.hoisted:
            U = (None if src is None else seqs[src[1]] if src[0] == "seq" else
                 self.stacked_c[self.kept.index(src[1])] if src[0] == "carry" else res[base + src[1]])
            d = _hoisted_grad(ob, kind, res[base + gi], U, k)
            extra[k.id] = d if k.id not in extra else ob.op("add", extra[k.id], d)
        return result, extra
