"""The rest of the random-graph generator (random_graphs.py): layers with
parameters, losses, recurrent layers, integer-indexed ops, constants and the
shape ops with attributes.  Each `_k_<kind>(g)` adds one op to the `_Gen`
`g` when its pool can supply the operands (else it does nothing)."""
from __future__ import annotations


def _lit(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def _rank(g, r, inputs_only=False):
    return g.pick(lambda s: len(s) == r, inputs_only=inputs_only)


def _output(g, expr: str) -> None:
    """A value that leaves the pool's shape discipline (a scalar, an integer tensor): a model output."""
    nm = g.name()
    g.lines.append(f"    {nm} = {expr}")
    g.outputs_extra.append(nm)


def _int_input(g, shape: tuple) -> str:
    nm = g.name("i")
    g.ints.append((nm, shape))
    return nm


def _k_stdvar(g):
    # an axis of at least 2 entries: with correction 1 a single entry gives 0/0
    c = g.pick(lambda s: any(isinstance(d, int) and d >= 2 for d in s[1:]))
    if c is None:
        return
    x, s = c
    op = g.cyc('["std", "var"]', ["std", "var"])
    ax = g.rng.choice([i for i in range(1, len(s)) if s[i] >= 2])
    keep, corr = g.choice(op, "keepdims", [False, True]), g.choice(op, "correction", [0, 1])
    shape = tuple(1 if i == ax else d for i, d in enumerate(s)) if keep else s[:ax] + s[ax + 1:]
    g.emit(f"{op}({x}, axis={ax}, keepdims={_lit(keep)}, correction={corr})", shape)


def _k_split(g):
    ax = g.choice("split", "axis", [1, 2])
    c = g.pick(lambda s: len(s) > ax and s[ax] % 2 == 0)
    if c is None:
        return
    x, s = c
    a, b = g.name(), g.name()
    g.lines.append(f"    {a}, {b} = split({x}, 2, axis={ax})")
    half = tuple(d // 2 if i == ax else d for i, d in enumerate(s))
    g.pool += [(a, half), (b, half)]


def _k_pad(g):
    x, s = g.pick(lambda s: len(s) >= 2 and s[-1] >= 3)
    mode = g.choice("pad", "mode", ["constant", "reflect", "replicate"])
    value = ", value=0.5" if mode == "constant" else ""
    g.emit(f'pad({x}, [1, 2], mode="{mode}"{value})', s[:-1] + (s[-1] + 3,))


def _k_slice(g):
    c = g.pick(lambda s: len(s) >= 2 and s[1] >= 2)
    if c:
        g.use("strided_slice")
        g.emit(f"{c[0]}[:, 1:]", (c[1][0], c[1][1] - 1) + c[1][2:])


def _k_logical(g):
    a, s = g.pick(inputs_only=True)
    same = [n for n, sh in g.inputs if sh == s]
    b, c, d = (g.rng.choice(same) for _ in range(3))
    op = g.cyc('["logical_and", "logical_or", "logical_not"]', ["logical_and", "logical_or", "logical_not"])
    g.use(op), g.use("gt"), g.use("lt"), g.use("where")
    cond = {"logical_and": f"({a} > {b}) and ({c} < {d})", "logical_or": f"({a} > {b}) or ({c} < {d})",
            "logical_not": f"not ({a} > {b})"}[op]
    pool_same = [n for n, sh in g.pool if sh == s]
    g.emit(f"where({cond}, {g.rng.choice(pool_same)}, {g.rng.choice(pool_same)})", s)


def _k_cast(g):
    # inputs only: a float64 and a float32 value of the same input round alike
    x, s = g.pick(inputs_only=True)
    dt = g.choice("cast", "dtype", ["int64", "float16"])
    g.emit(f"cast(cast({x} * 3.0, i64), f32)" if dt == "int64" else f"cast(cast({x}, f16), f32)", s)


def _k_classloss(g):
    x, s = g.pick(lambda s: len(s) == 2)
    t = _int_input(g, ("N",))
    op = g.cyc('["cross_entropy", "nll_loss"]', ["cross_entropy", "nll_loss"])
    red = g.choice(op, "reduction", ["mean", "sum", "none"])
    if op == "cross_entropy":
        ls = g.choice(op, "label_smoothing", [0.0, 0.1])
        _output(g, f'cross_entropy({x}, {t}, reduction="{red}", label_smoothing={ls})')
    else:
        g.use("log_softmax")
        _output(g, f'nll_loss(log_softmax({x}, axis=1), {t}, reduction="{red}")')


def _k_probloss(g):
    x, s = g.pick(lambda s: len(s) == 2)
    y = g.cyc('[n for n, sh in g.pool if sh == s]', [n for n, sh in g.pool if sh == s])
    op = g.cyc('["binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"]', ["binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"])
    g.use("sigmoid")
    if op == "kl_div":
        red, lt = g.choice(op, "reduction", ["mean", "sum", "none"]), g.choice(op, "log_target", [False, True])
        g.use("log_softmax"), g.use("softmax")
        tgt = f"log_softmax({y}, axis=1)" if lt else f"softmax({y}, axis=1)"
        _output(g, f'kl_div(log_softmax({x}, axis=1), {tgt}, reduction="{red}", log_target={_lit(lt)})')
        return
    red = g.choice(op, "reduction", ["mean", "none"])
    inp = f"sigmoid({x})" if op == "binary_cross_entropy" else x
    _output(g, f'{op}({inp}, sigmoid({y}), reduction="{red}")')


def _k_attention(g):
    c = g.pick(lambda s: len(s) in (3, 4))
    if c:
        causal = g.choice("scaled_dot_product_attention", "is_causal", [False, True])
        g.emit(f"scaled_dot_product_attention({c[0]}, {c[0]}, {c[0]}, causal={_lit(causal)})", c[1])


def _k_pool1d(g):
    x, (n, ch, L) = _rank(g, 3)
    op = g.cyc('["avg_pool1d", "max_pool1d", "adaptive_avg_pool1d"]', ["avg_pool1d", "max_pool1d", "adaptive_avg_pool1d"])
    if op == "adaptive_avg_pool1d":
        o = g.choice(op, "output_size", [1, 3])
        g.emit(f"adaptive_avg_pool1d({x}, {o})", (n, ch, o))
        return
    k = g.choice(op, "kernel_size", [2, 3])
    if op == "avg_pool1d":
        p = min(g.choice(op, "padding", [0, 1]), k // 2)
        g.emit(f"avg_pool1d({x}, {k}, stride=1, padding={p})", (n, ch, L + 2 * p - k + 1))
    else:
        d = g.choice(op, "dilation", [1, 2])
        if d * (k - 1) + 1 <= L:
            g.emit(f"max_pool1d({x}, {k}, stride=1, dilation={d})", (n, ch, L - d * (k - 1)))


def _k_conv1d(g):
    x, (n, ch, L) = _rank(g, 3)
    st, p = g.choice("conv1d", "stride", [1, 2]), g.choice("conv1d", "padding", [0, 1])
    co = g.rng.randint(2, 4)
    if L + 2 * p >= 3:
        g.emit(f"conv1d({x}, {co}, kernel=3, stride={st}, padding={p})", (n, co, (L + 2 * p - 3) // st + 1))


def _k_conv_t(g):
    x, (n, ch, h, w) = _rank(g, 4)
    st, p = g.choice("conv_transpose2d", "stride", [1, 2]), g.choice("conv_transpose2d", "padding", [0, 1])
    co = g.rng.randint(1, 3)
    out = lambda L: (L - 1) * st - 2 * p + 3   # noqa: E731
    g.emit(f"conv_transpose2d({x}, {co}, kernel=3, stride={st}, padding={p})", (n, co, out(h), out(w)))


def _k_norm4d(g):
    x, s = _rank(g, 4)
    op = g.cyc('["group_norm", "prelu", "local_response_norm"]', ["group_norm", "prelu", "local_response_norm"])
    if op == "group_norm":
        ng = g.choice(op, "num_groups", [1, 2])
        if s[1] % ng:
            return
        g.emit(f"group_norm({x}, {ng})", s)
    elif op == "prelu":
        g.use(op)
        g.emit(f"prelu({x})", s)
    else:
        size = g.choice(op, "size", [2, 3])
        g.emit(f"local_response_norm({x}, {size})", s)


def _k_expand(g):
    x, s = g.pick(lambda s: len(s) >= 2)
    g.use("expand"), g.use("sum")
    dims = ", ".join(["-1"] + [str(d) for d in s[1:]])
    g.emit(f"expand(sum({x}, axis=1, keepdims=true), {dims})", s)


def _k_index(g):
    op = g.cyc('["embedding", "one_hot", "gather", "index_select"]', ["embedding", "one_hot", "gather", "index_select"])
    g.use(op)
    if op in ("embedding", "one_hot"):
        e = _int_input(g, ("N", 3))
        g.emit(f"embedding({e}, 7, 3)" if op == "embedding" else f"one_hot({e}, 5)",
               ("N", 3, 3) if op == "embedding" else ("N", 3, 5))
        return
    x, s = g.pick(lambda s: len(s) >= 2 and s[1] >= 2)
    if op == "gather":
        idx = _int_input(g, ("N", 2) + s[2:])
        g.emit(f"gather({x}, 1, {idx})", ("N", 2) + s[2:])
    else:
        idx = _int_input(g, (3,))
        g.emit(f"index_select({x}, 1, {idx})", ("N", 3) + s[2:])


def _k_constant(g):
    x, s = _rank(g, 3)
    op = g.cyc('["arange", "full", "sinusoidal_positions"]', ["arange", "full", "sinusoidal_positions"])
    g.use(op), g.use("add")
    const = {"arange": f"cast(arange({s[2]}), f32)", "full": f"full([{s[2]}], 0.5)",
             "sinusoidal_positions": f"sinusoidal_positions({s[1]}, {s[2]})"}[op]
    if op == "arange":
        g.use("cast")
    g.emit(f"{x} + {const}", s)


def _k_recurrent(g):
    x, (n, L, d) = _rank(g, 3)
    op = g.cyc('["lstm", "gru", "rnn"]', ["lstm", "gru", "rnn"])
    hidden = g.rng.randint(2, 4)
    if op == "rnn":
        nl = g.choice(op, "nonlinearity", ["tanh", "relu"])
        extra, dirs = f', nonlinearity="{nl}"', 1
    else:
        bi = g.choice(op, "bidirectional", [False, True])
        extra, dirs = f", bidirectional={_lit(bi)}", 2 if bi else 1
    out, state = g.name(), g.name()
    g.lines.append(f"    {out}, {state} = {op}({x}, {hidden}, batch_first=true{extra})")
    g.pool.append((out, (n, L, hidden * dirs)))


INTERPOLATE_MODES = ["nearest", "nearest-exact", "linear", "bilinear", "bicubic", "area"]


def step_resample(g) -> None:
    """Resampling after the other steps (so the graphs they draw stay as they were), each
    result a model output of its own: three interpolates, pixel_unshuffle and pixel_shuffle."""
    for _ in range(3):
        _interpolate(g)
    for op in ("pixel_unshuffle", "pixel_shuffle"):
        r = g.choice(op, "upscale_factor" if op == "pixel_shuffle" else "downscale_factor", [1, 2])
        if op == "pixel_unshuffle":
            c = g.pick(lambda s: len(s) == 4 and s[2] % r == 0 and s[3] % r == 0)
            if c:
                _output(g, f"pixel_unshuffle({c[0]}, {r})")
            continue
        x, (n, ch, h, w) = _rank(g, 4)
        if ch % (r * r):     # widen the channels to a multiple of r*r by repeating them
            g.use("concat")
            x = f"concat([{', '.join([x] * r * r)}], axis=1)"
        _output(g, f"pixel_shuffle({x}, {r})")


def _interpolate(g):
    op = "interpolate"
    mode = g.choice(op, "mode", INTERPOLATE_MODES)
    x, s = g.pick(lambda sh: len(sh) == (3 if mode == "linear" else 4) and min(sh[2:]) >= 2)
    kws = [f'mode="{mode}"']
    if mode in ("linear", "bilinear", "bicubic"):
        ac = g.choice(op, "align_corners", [None, False, True])
        kws.append(f"align_corners={_lit(ac)}")
    factor = g.choice(op, "scale_factor", [None, 2, 0.5, 1.5])
    spatial = s[2:]
    if factor is None:
        size = tuple(d + 1 if i == 0 else max(d - 1, 1) for i, d in enumerate(spatial))
        kws.append(f"size={size if len(size) > 1 else size[0]}")
    else:
        kws.append(f"scale_factor={factor}")
        rec = g.choice(op, "recompute_scale_factor", [None, True])
        kws.append(f"recompute_scale_factor={_lit(rec)}")
    _output(g, f"interpolate({x}, {', '.join(kws)})")


KINDS = {k[3:]: f for k, f in globals().items() if k.startswith("_k_")}


def step_more(g) -> None:
    if not any(len(s) == 3 for _, s in g.pool):
        g.new_input(("N", 4, 6))
    if not any(len(s) == 4 for _, s in g.pool):
        g.new_input(("N", 2, 6, 6))
    KINDS[g.cyc("kinds", sorted(KINDS))](g)
