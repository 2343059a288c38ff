"""TVM lowering of the recurrences (rnn, lstm, gru) and `scan`.

Registered into `lowering.LOWERING`; see that module for the conventions.

* Recurrences are unrolled over time, so the number of steps must be known
  at compile time (`low.concrete(T)`; `lower_model` binds it to the example
  size).  Per layer and direction the input projection of every step is one
  matmul before the loop; each step is then a call to a private Relax
  function (hidden projection + cell) shared by every step, layer and
  direction with the same shapes, so its kernels are built once.
* `scan` is unrolled the same way: per step the body graph is lowered into a
  copy of the value map with its inputs bound to the carries and to the
  step's slices (it may read outer values directly).
* Per-step slices are `take`s with a constant index (one kernel for all
  steps) and per-step results are stacked by private concat functions of at
  most CHUNK operands: a split or concat with one operand per step is a
  kernel with T buffers, which takes seconds to schedule.

The losses live in `lowering_loss`, the max-pooling argmax helpers in
`lowering_pool_indices`.
"""
from __future__ import annotations

from ...compiler.ir import free_values
from .lowering import arg_as, lowers, out_dtype, _op, _R
from .relaxgen import Unsupported


# ---------------------------------------------------------------------------
# recurrent layers, unrolled
# ---------------------------------------------------------------------------

# Long unrolled loops must not produce kernels with one operand per step: a
# split into T pieces or a concat of T pieces is a single kernel with T
# buffers, and scheduling it costs seconds.  Steps are taken one at a time
# with `take` (one kernel shared by every step: the index is a constant
# tensor, not code), and per-step results are stacked by private functions
# concatenating at most CHUNK tensors, called in a tree.

CHUNK = 8


def _step_slice(low, x, axis: int, t: int):
    """x[t] along `axis` (the axis removed)."""
    return low.emit(_op().take(x, low.const(t, "int64"), axis, mode="clip"))


def _steps(low, x, axis: int, n: int):
    """The `n` slices of `x` along `axis` (each without that axis)."""
    return [_step_slice(low, x, axis, t) for t in range(n)]


def _generic_types(exprs):
    """The tensor types of `exprs` with every symbolic dimension a fresh
    variable (equal expressions share one), and a key naming that signature."""
    from tvm import tirx
    relax = _R()
    names: dict = {}
    types, key = [], []
    for e in exprs:
        t = e.ty
        dims = []
        for d in t.shape:
            if isinstance(d, tirx.IntImm):
                dims.append(int(d))
            else:
                v = names.get(str(d))
                if v is None:
                    v = names[str(d)] = tirx.Var(f"d{len(names)}", "int64")
                dims.append(v)
        types.append(relax.TensorType(dims, t.dtype))
        key.append((tuple(d if isinstance(d, int) else d.name for d in dims), str(t.dtype)))
    return types, tuple(key)


def private_function(low, key, name: str, arg_types, build):
    """A private Relax function added to the module once per `key`;
    `build(sb, params)` emits its body and returns the result."""
    relax = _R()
    cache = low.__dict__.setdefault("_private_functions", {})
    gv = cache.get(key)
    if gv is None:
        params = [relax.Var(f"a{i}", t) for i, t in enumerate(arg_types)]
        sb = relax.BlockBuilder()
        with sb.function(name, params, private=True):
            with sb.dataflow():
                out = sb.emit_output(build(sb, params))
            sb.emit_func_output(out)
        gv = low.bb.add_func(sb.get()[name], f"{name}{len(cache)}")
        cache[key] = gv
    return gv


def _concat_call(low, grp, axis: int, expand: bool):
    relax, op = _R(), _op()
    if len(grp) == 1:
        return low.emit(op.expand_dims(grp[0], [axis])) if expand else grp[0]
    types, key = _generic_types(grp)

    def build(sb, ps):
        if expand:
            ps = [sb.emit(op.expand_dims(p, [axis])) for p in ps]
        return sb.emit(op.concat(relax.Tuple(list(ps)), axis=axis))

    gv = private_function(low, ("concat", expand, axis, key), "stack" if expand else "concat", types, build)
    return low.emit(relax.Call(gv, list(grp)))


def _stack(low, xs, axis: int):
    """Stack along a new `axis`, in chunks of CHUNK (see above)."""
    parts = [_concat_call(low, xs[i:i + CHUNK], axis, True) for i in range(0, len(xs), CHUNK)]
    while len(parts) > 1:
        parts = [_concat_call(low, parts[i:i + CHUNK], axis, False) for i in range(0, len(parts), CHUNK)]
    return parts[0]


def _state(low, s0, idx, shape, dt):
    op = _op()
    if s0 is None:
        return low.emit(op.zeros(low.shape(shape), dt))
    return low.emit(op.squeeze(op.strided_slice(s0, [0], [idx], [idx + 1], assume_inbound=True), [0]))


def _rnn_cell(act):
    def cell(em, xw, hw, states, w_hr_t):
        op = _op()
        s = op.add(xw, hw)
        return (em.emit(op.tanh(s) if act == "tanh" else op.nn.relu(s)),)
    return cell


def _split_gates(em, x, n):
    relax, op = _R(), _op()
    parts = em.emit(op.split(x, n, 1))
    return [relax.TupleGetItem(parts, i) for i in range(n)]


def _lstm_cell(em, xw, hw, states, w_hr_t):
    op = _op()
    _, c = states
    i, f, g, o = _split_gates(em, em.emit(op.add(xw, hw)), 4)
    c = em.emit(op.add(op.multiply(op.sigmoid(f), c), op.multiply(op.sigmoid(i), op.tanh(g))))
    h = em.emit(op.multiply(op.sigmoid(o), op.tanh(c)))
    if w_hr_t is not None:
        h = em.emit(op.matmul(h, w_hr_t))
    return h, c


def _gru_cell(em, xw, hw, states, w_hr_t):
    op = _op()
    (h,) = states
    xr, xz, xn = _split_gates(em, xw, 3)
    hr, hz, hn = _split_gates(em, hw, 3)
    r = em.emit(op.sigmoid(op.add(xr, hr)))
    z = em.emit(op.sigmoid(op.add(xz, hz)))
    n = em.emit(op.tanh(op.add(xn, op.multiply(r, hn))))
    # same association as ATen's GRU cell (and the reference): (h - n) * z + n
    return (em.emit(op.add(op.multiply(op.subtract(h, n), z), n)),)


def _step_function(low, name, cell, nb, GH, state_sizes, P, H, bias, proj, dt):
    """A private Relax function for one time step of a cell:
    (xw_t, *states, w_hh^T[, b_hh][, w_hr^T]) -> (new states...).

    Every step of every layer and direction with the same shapes calls the
    same function, so its kernels are built once however long the sequence
    (unrolling the cell inline costs a few kernels per step in compile time).
    """
    relax, op = _R(), _op()
    from tvm import tirx
    key = (name, GH, tuple(state_sizes), P, H, bias, proj, dt, isinstance(nb, int) and nb)
    cache = low.__dict__.setdefault("_step_functions", {})
    if key in cache:
        return cache[key]
    n = nb if isinstance(nb, int) else tirx.Var("n", "int64")

    def ty(*shape):
        return relax.TensorType(list(shape), dt)

    xw = relax.Var("xw", ty(n, GH))
    states = [relax.Var(f"s{i}", ty(n, size)) for i, size in enumerate(state_sizes)]
    w_hh_t = relax.Var("w_hh_t", ty(P, GH))
    params = [xw, *states, w_hh_t]
    b_hh = w_hr_t = None
    if bias:
        b_hh = relax.Var("b_hh", ty(GH))
        params.append(b_hh)
    if proj:
        w_hr_t = relax.Var("w_hr_t", ty(H, P))
        params.append(w_hr_t)
    sb = relax.BlockBuilder()
    with sb.function(f"{name}_step", params, private=True):
        with sb.dataflow():
            hw = sb.emit(op.matmul(states[0], w_hh_t))
            if b_hh is not None:
                hw = sb.emit(op.add(hw, b_hh))
            new = cell(sb, xw, hw, tuple(states), w_hr_t)
            out = sb.emit_output(relax.Tuple(list(new)))
        sb.emit_func_output(out)
    func = sb.get()[f"{name}_step"]
    gv = low.bb.add_func(func, f"{name}_step{len(cache)}")
    cache[key] = gv
    return gv


def _recurrent(low, node, args, cell, num_gates, n_states):
    relax, op = _R(), _op()
    a = node.attrs
    dt = out_dtype(node)
    layers = int(a["num_layers"])
    dirs = 2 if a["bidirectional"] else 1
    bias = bool(a["bias"])
    proj = int(a.get("proj_size", 0) or 0)
    per = (4 if bias else 2) + (1 if proj else 0)
    xshape = node.inputs[0].type.shape
    T, Nb = (xshape[1], xshape[0]) if a["batch_first"] else (xshape[0], xshape[1])
    steps = low.concrete(T, "the number of recurrent steps (the TVM backend unrolls recurrences)")
    x = arg_as(low, node, args, 0, dt)
    if a["batch_first"]:
        x = low.emit(op.permute_dims(x, [1, 0, 2]))
    inits = [arg_as(low, node, args, 1 + i, dt) if args[1 + i] is not None else None
             for i in range(n_states)]
    wbase = 1 + n_states
    weights = [arg_as(low, node, args, wbase + i, dt) for i in range(len(args) - wbase)]
    GH = low.concrete(node.inputs[wbase].type.shape[0], "the hidden size of a recurrence")
    H = GH // num_gates
    P = proj or H
    sizes = [P, H][:n_states]
    nb = low.prim(Nb)
    finals = [[] for _ in range(n_states)]
    layer_in = x
    for layer in range(layers):
        outs = []
        for d in range(dirs):
            idx = layer * dirs + d
            group = weights[idx * per:(idx + 1) * per]
            w_ih, w_hh = group[0], group[1]
            b_ih, b_hh = (group[2], group[3]) if bias else (None, None)
            # the input projection of every step at once
            xw = low.emit(op.linear(layer_in, w_ih, b_ih))
            xws = _steps(low, xw, 0, steps)
            # weight-only transposes: lifted into the transform-params function
            extra = [low.emit(op.permute_dims(w_hh, [1, 0]))]
            if bias:
                extra.append(b_hh)
            if proj:
                extra.append(low.emit(op.permute_dims(group[-1], [1, 0])))
            step = _step_function(low, node.op.name, cell, nb, GH, sizes, P, H, bias, proj, dt)
            states = [_state(low, s0, idx, [Nb, size], dt) for s0, size in zip(inits, sizes)]
            ys = [None] * steps
            order = range(steps) if d == 0 else range(steps - 1, -1, -1)
            for t in order:
                res = low.emit(relax.Call(step, [xws[t], *states, *extra]))
                states = [low.emit(relax.TupleGetItem(res, i)) for i in range(n_states)]
                ys[t] = states[0]
            outs.append(_stack(low, ys, 0))
            for final, s in zip(finals, states):
                final.append(s)
        layer_in = outs[0] if dirs == 1 else low.emit(op.concat(relax.Tuple(outs), axis=2))
    y = layer_in
    if a["batch_first"]:
        y = low.emit(op.permute_dims(y, [1, 0, 2]))
    return [y] + [_stack(low, f, 0) for f in finals]


@lowers("rnn")
def _rnn(low, node, args, env):
    return _recurrent(low, node, args, _rnn_cell(node.attrs["nonlinearity"]), 1, 1)


@lowers("lstm")
def _lstm(low, node, args, env):
    return _recurrent(low, node, args, _lstm_cell, 4, 2)


@lowers("gru")
def _gru(low, node, args, env):
    return _recurrent(low, node, args, _gru_cell, 3, 1)


# ---------------------------------------------------------------------------
# scan, unrolled
# ---------------------------------------------------------------------------

def _body_function(low, node, env):
    """The scan body as a private Relax function
    (carries..., step slices..., captured values...) -> (outputs...),
    or None when it cannot be one (a random op in the body reads a host-drawn
    input of ``main``; a dimension the body uses appears in no operand)."""
    from .lowering import random_plan
    relax = _R()
    body = node.body
    if any(random_plan(n) is not None for n in body.walk()):
        return None
    free = free_values(body)
    if any(v.id not in env for v in free):
        return None
    saved = (low.bb, low.dim_vars, dict(low.__dict__.get("_private_functions", {})),
             dict(low.__dict__.get("_step_functions", {})), low.node)
    ok = False
    try:
        sb = relax.BlockBuilder(low.bb.get())
        known = {gv.name_hint for gv, _ in low.bb.get().functions_items()}
        low.bb, low.dim_vars = sb, {}
        params = [relax.Var(f"b{i}", low.value_type(v)) for i, v in enumerate(body.inputs)]
        cap = [relax.Var(f"c{i}", low.value_type(v)) for i, v in enumerate(free)]
        k = low.__dict__.get("_scan_bodies", 0)
        low.__dict__["_scan_bodies"] = k + 1
        name = f"scan_body{k}"
        while name in known:
            k += 1
            name = f"scan_body{k}"
        with sb.function(name, params + cap, private=True):
            with sb.dataflow():
                benv = {}
                for v, p in zip(body.inputs, params):
                    benv[v.id] = p
                for v, p in zip(free, cap):
                    benv[v.id] = p
                low.lower_nodes(body, benv)
                out = sb.emit_output(relax.Tuple([benv[v.id] for v in body.outputs]))
            # the new function's GlobalVar, or an identical earlier body's
            body_gv = sb.emit_func_output(out)
        mod = sb.get()
        try:
            # raises (TVM 0.27) or returns False (older) when, e.g., the body uses
            # a symbolic dimension that no operand's shape defines
            if relax.analysis.well_formed(mod) is False:
                return None
        except Exception:  # noqa: BLE001 - fall back to inlining the body per step
            return None
        fresh = [(gv, f) for gv, f in mod.functions_items() if gv.name_hint not in known]
        ok = True
    finally:
        low.bb, low.dim_vars = saved[0], saved[1]
        low.node = saved[4]
        if not ok:
            low.__dict__["_private_functions"] = saved[2]
            low.__dict__["_step_functions"] = saved[3]
    for gv, f in fresh:
        low.bb.update_func(gv, f)
    return body_gv, [env[v.id] for v in free]


@lowers("scan")
def _scan(low, node, args, env):
    relax = _R()
    a = node.attrs
    nc, axis = int(a["num_carry"]), int(a["axis"])
    body = node.body
    seq_vals = node.inputs[nc:]
    length = low.concrete(seq_vals[0].type.shape[axis],
                          "the number of scan steps (the TVM backend unrolls scans)")
    if length == 0:
        raise Unsupported("a scan over zero steps", node.span)
    carries = list(args[:nc])
    sliced = [_steps(low, s, axis, length) for s in args[nc:]]
    order = range(length - 1, -1, -1) if a.get("reverse") else range(length)
    nout = len(body.outputs)
    ys = [[None] * length for _ in range(nout - nc)]
    outer_node = low.node
    fn = _body_function(low, node, env) if length > 1 else None
    for t in order:
        if fn is not None:
            gv, captured = fn
            res = low.emit(relax.Call(gv, carries + [s[t] for s in sliced] + captured))
            outs = [low.emit(relax.TupleGetItem(res, i)) for i in range(nout)]
        else:
            benv = dict(env)
            for v, c in zip(body.inputs[:nc], carries):
                benv[v.id] = c
            for v, s in zip(body.inputs[nc:], sliced):
                benv[v.id] = s[t]
            low.lower_nodes(body, benv)
            outs = [benv[v.id] for v in body.outputs]
        carries = outs[:nc]
        for i, yv in enumerate(outs[nc:]):
            ys[i][t] = yv
    low.node = outer_node
    return carries + [_stack(low, lst, axis) for lst in ys]


from . import lowering_fused  # noqa: E402,F401 - fused regions register themselves
