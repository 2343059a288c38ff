"""Random valid dlc models (NNSmith-style), written as `.dln` text.

    spec, used = random_spec(seed)      # used: {(op, attr, value), (op, None, None), ...}

Shape-correct by construction: the generator keeps a pool of float tensors
with known shapes (the batch dimension is the symbolic `N`, `example N = 2`)
and each step picks an op whose operands the pool can supply, computing the
result's shape itself.  No NaN or Inf can arise: log, sqrt, rsqrt, reciprocal,
log1p, div and pow get a positive operand built as `sigmoid(x) + 0.5`; exp and
prod get tanh-bounded values.  Ops that are discontinuous (floor, ceil, sign,
comparisons, argmax/argmin) only read model inputs, which the float32 backends
and the float64 reference see as the same numbers, so a tiny rounding
difference upstream can never flip their result.

`GENERATED` lists, for every op the generator writes, the attribute values
it draws; `EXCLUDED` names the registry ops it never writes and why.  The
coverage test checks that the two cover the registry and that every listed
value is drawn over the fixed seeds.
"""
from __future__ import annotations

import random
import zlib

from random_graphs_more import _lit, step_more, step_resample

# op -> {attr: values drawn}
GENERATED: dict[str, dict] = {}

EXCLUDED = {
    "fused": "made by the fusion pass; every -O2/-O3 run of a generated graph exercises it",
    "scan": "control flow: written via the recurrent layers and block loops, not a spec-level op",
    "scatter_add": "internal: made by the VJP of gather (exercised by --train gradients)",
    "scatter_add_rows": "internal: made by the VJPs of embedding and max pooling",
    "max_pool2d_indices": "internal: made by the VJP of max_pool2d",
    "adaptive_max_pool2d_indices": "internal: made by the VJP of adaptive_max_pool2d",
    "max_pool3d_indices": "internal: made by the VJP of max_pool3d",
    # the generator's values are rank <= 4 (N, C, H, W); the 3-D ops are checked against torch with gradients
    # in tests/frontend/test_pool3d_builtins.py, tests/compiler/test_vjp_nn.py and the backends' op tests
    "conv3d": "5-D: the generator's values are rank <= 4", "conv_transpose3d": "5-D: as conv3d",
    "max_pool3d": "5-D: as conv3d", "avg_pool3d": "5-D: as conv3d",
    "dropout": "random: the backends draw different streams (by design), nothing to compare",
    "uniform": "random: as dropout", "randn": "random: as dropout",
    # the int8 ops are made by the quantize/lower_int8 passes from a calibrated QuantPlan, never written in a
    # spec; each backend is checked bit for bit against the NumPy integer reference in
    # tests/backends/numpy/test_kernels_quant.py, torch/test_lowering_quant.py and tvm/test_int8_*.py
    "quantize_linear": "int8: made by the quantize pass", "dequantize_linear": "int8: made by the quantize pass",
    "qconv2d": "int8: made by lower_int8", "qdense": "int8: made by lower_int8",
    "requant_multiplier": "int8: made by lower_int8",
}

UNARY = ["abs", "cos", "erf", "neg", "relu", "relu6", "selu", "sigmoid", "silu", "sin", "square", "tanh",
         "hardsigmoid", "hardswish"]
POSITIVE_ONLY = ["log", "sqrt", "rsqrt", "reciprocal", "log1p"]
ACT_ATTRS = {"elu": {"alpha": [1.0, 0.5]}, "gelu": {"approximate": ["none", "tanh"]},
             "leaky_relu": {"negative_slope": [0.01, 0.2]}, "hardtanh": {"min_val": [-1.0, -0.5], "max_val": [1.0, 2.0]},
             "softplus": {"beta": [1.0, 2.0], "threshold": [20.0, 1.0]}}
BINARY = {"add": "+", "sub": "-", "mul": "*", "maximum": None, "minimum": None}
INPUT_ONLY_UNARY = ["floor", "ceil", "sign"]
COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
REDUCE = ["sum", "mean", "max", "min", "prod", "logsumexp"]
REDUCE_ATTRS = {"axis": ["none", "int", "negative"], "keepdims": [False, True]}
POOL2D = {"avg_pool2d": {"kernel_size": [2, 3], "stride": [None, 1, 2], "padding": [0, 1], "ceil_mode": [False, True],
                         "count_include_pad": [True, False]},
          "max_pool2d": {"kernel_size": [2, 3], "stride": [None, 1, 2], "padding": [0, 1], "dilation": [1, 2],
                         "ceil_mode": [False, True]}}
# layer_norm written as the layer over the trailing axes, over the channel axis, with explicit weights, and
# instance norm (a group norm with a group per channel)
LAYER_NORM_FORMS = ["trailing", "channel", "functional", "instance"]
LOSSES = {"mse_loss": {"reduction": ["mean", "sum", "none"]}, "l1_loss": {"reduction": ["mean", "sum", "none"]},
          "smooth_l1_loss": {"reduction": ["mean", "sum", "none"], "beta": [1.0, 0.5]}}

for _op in UNARY + POSITIVE_ONLY + INPUT_ONLY_UNARY + list(BINARY) + list(COMPARE) + ["div", "pow", "where"]:
    GENERATED[_op] = {}
GENERATED.update(ACT_ATTRS)
GENERATED.update({r: dict(REDUCE_ATTRS) for r in REDUCE})
GENERATED.update({"argmax": {"keepdims": [False, True]}, "argmin": {"keepdims": [False, True]},
                  "softmax": {"axis": [-1, 1]}, "log_softmax": {"axis": [-1, 1]}, "exp": {}, "matmul": {},
                  "linear": {"bias": [True, False]}, "reshape": {}, "transpose": {}, "concat": {"axis": [0, 1, -1]},
                  "tril": {"k": [0, 1, -1]}, "triu": {"k": [0, 1, -1]},
                  "adaptive_avg_pool2d": {"output_size": [1, 2]}, "adaptive_max_pool2d": {"output_size": [1, 2]},
                  "conv2d": {"stride": [1, 2], "padding": [0, 1], "dilation": [1, 2], "groups": [1, 2]},
                  "batch_norm": {}, "layer_norm": {}})
GENERATED.update(POOL2D)
GENERATED.update(LOSSES)


# the ops of tests/fuzz/random_graphs_more.py, with the attribute values they draw
EXTRA_ATTRS = {
    "std": {"correction": [0, 1], "keepdims": [False, True]}, "var": {"correction": [0, 1], "keepdims": [False, True]},
    "split": {"axis": [1, 2]}, "pad": {"mode": ["constant", "reflect", "replicate"]}, "strided_slice": {},
    "logical_and": {}, "logical_or": {}, "logical_not": {}, "cast": {"dtype": ["int64", "float16"]},
    "cross_entropy": {"reduction": ["mean", "sum", "none"], "label_smoothing": [0.0, 0.1]},
    "nll_loss": {"reduction": ["mean", "sum", "none"]}, "binary_cross_entropy": {"reduction": ["mean", "none"]},
    "binary_cross_entropy_with_logits": {"reduction": ["mean", "none"]},
    "kl_div": {"reduction": ["mean", "sum", "none"], "log_target": [False, True]},
    "scaled_dot_product_attention": {"is_causal": [False, True]},
    "avg_pool1d": {"kernel_size": [2, 3], "padding": [0, 1]}, "max_pool1d": {"kernel_size": [2, 3], "dilation": [1, 2]},
    "adaptive_avg_pool1d": {"output_size": [1, 3]}, "conv1d": {"stride": [1, 2], "padding": [0, 1]},
    "conv_transpose2d": {"stride": [1, 2], "padding": [0, 1]}, "group_norm": {"num_groups": [1, 2]},
    "prelu": {}, "local_response_norm": {"size": [2, 3]}, "expand": {},
    "embedding": {}, "one_hot": {}, "gather": {}, "index_select": {}, "arange": {}, "full": {},
    "sinusoidal_positions": {},
    "lstm": {"bidirectional": [False, True]}, "gru": {"bidirectional": [False, True]},
    "rnn": {"nonlinearity": ["tanh", "relu"]},
    "interpolate": {"mode": ["nearest", "nearest-exact", "linear", "bilinear", "bicubic", "area"],
                    "align_corners": [None, False, True], "scale_factor": [None, 2, 0.5, 1.5],
                    "recompute_scale_factor": [None, True]},
    "pixel_shuffle": {"upscale_factor": [1, 2]}, "pixel_unshuffle": {"downscale_factor": [1, 2]},
}

GENERATED.update(EXTRA_ATTRS)


# registry attributes of generated ops that the generator does not draw from a
# list: why.  Anything else of the registry must be in GENERATED (the coverage test).
_SHAPE_VALUED = "follows the operand shapes (chosen per graph, not from a list)"
_NOT_YET = "not varied yet: the default only"
ATTR_NOT_VARIED = {
    "shape": _SHAPE_VALUED, "axes": _SHAPE_VALUED, "normalized_shape": _SHAPE_VALUED, "pad": _SHAPE_VALUED,
    "begin": _SHAPE_VALUED, "end": _SHAPE_VALUED, "strides": _SHAPE_VALUED, "sections": _SHAPE_VALUED,
    "length": _SHAPE_VALUED, "size": _SHAPE_VALUED, "dim": _SHAPE_VALUED, "num_classes": _SHAPE_VALUED, "start": _SHAPE_VALUED,
    "stop": _SHAPE_VALUED, "step": _SHAPE_VALUED, "axis": _SHAPE_VALUED, "value": _SHAPE_VALUED,
    "layout": "NHWC is chosen by the layout pass, not written in a spec; the -O2/-O3 runs exercise it",
    "training": "batch norm's training flag follows the graph's mode (eval here, train under --train)",
    "momentum": "only used in training mode (as `training`)",
    "dtype": "the float32 default (cast's dtype is drawn: int64, float16)",
    "eps": _NOT_YET, "divisor_override": _NOT_YET, "ignore_index": _NOT_YET, "scale": _NOT_YET,
    "stride": _NOT_YET, "ceil_mode": _NOT_YET, "count_include_pad": _NOT_YET, "padding": _NOT_YET,
    "dilation": _NOT_YET, "groups": _NOT_YET, "output_padding": _NOT_YET, "alpha": _NOT_YET, "beta": _NOT_YET,
    "k": _NOT_YET, "padding_idx": _NOT_YET, "num_layers": _NOT_YET, "bias": _NOT_YET, "proj_size": _NOT_YET,
    "bidirectional": _NOT_YET, "batch_first": "the generator's sequences are batch-first only",
}


class _Gen:
    def __init__(self, seed: int, prefix: str = ""):
        self.rng = random.Random(seed)
        self.seed = seed
        self.prefix = prefix
        self.ints: list[tuple[str, tuple]] = []       # integer inputs (class targets, indices)
        self.weights: list[tuple[str, tuple]] = []    # float inputs without a batch dimension
        self.outputs_extra: list[str] = []
        self.cursors: dict = {}
        self.pending: set = set()
        self.inputs: list[tuple[str, tuple]] = []
        self.pool: list[tuple[str, tuple]] = []      # float values: (name, shape), shape[0] is the batch
        self.lines: list[str] = []
        self.used: set = set()
        self.n = 0

    def name(self, p: str = "t") -> str:
        self.n += 1
        return f"{self.prefix}{p}{self.n}"

    def new_input(self, shape: tuple) -> str:
        nm = self.name("x")
        self.inputs.append((nm, shape))
        self.pool.append((nm, shape))
        return nm

    def use(self, op, attr=None, value=None):
        """Record an op (and an attribute value) for the step under way: it counts
        as generated only if the step writes a line (`_part`)."""
        self.pending.add((op, None, None))
        if attr is not None:
            self.pending.add((op, attr, value))

    def pick(self, pred=lambda s: True, inputs_only=False):
        cands = [(n, s) for n, s in (self.inputs if inputs_only else self.pool) if pred(s)]
        return self.rng.choice(cands) if cands else None

    def emit(self, expr: str, shape: tuple) -> str:
        """Bind `expr`; a value of rank >= 2 joins the pool (every op there wants a batch and a
        feature axis), a rank-1 one (the batch alone) becomes a model output."""
        nm = self.name()
        self.lines.append(f"    {nm} = {expr}")
        (self.pool if len(shape) >= 2 else self.outputs_extra).append((nm, shape) if len(shape) >= 2 else nm)
        return nm

    def cyc(self, key, values):
        """The values in turn from a random start: a graph draws each before repeating one."""
        # an op list starts where the seed says (consecutive seeds, consecutive ops); an
        # attribute's values at random (a seed-based start would tie them to the op's)
        start = self.rng.randrange(len(values)) if isinstance(key, tuple) else self.seed + zlib.crc32(key.encode())
        i = self.cursors.setdefault(key, start)
        self.cursors[key] = i + 1
        return list(values)[i % len(values)]

    def choice(self, op, attr, values):
        v = self.cyc((op, attr), values)
        self.use(op, attr, v)
        return v


def _same_shape_pair(g: _Gen, inputs_only=False):
    a = g.pick(inputs_only=inputs_only)
    same = [(n, s) for n, s in (g.inputs if inputs_only else g.pool) if s == a[1]]
    b = g.rng.choice(same)
    return a, b


def _step(g: _Gen) -> None:
    kind = g.rng.choice(["unary", "positive", "act", "act", "binary", "input_only", "compare", "reduce", "reduce", "softmax",
                         "matmul", "linear", "shape", "tri", "pool", "adaptive", "conv", "norm", "loss", "arg",
                         "divpow", "exp"] + ["more"] * 10)
    if kind == "more":
        step_more(g)
        return
    x, s = g.pick()
    if kind == "unary":
        op = g.cyc("UNARY", UNARY)
        g.use(op)
        g.emit(f"-{x}" if op == "neg" else f"{op}({x})", s)
    elif kind == "positive":
        op = g.cyc("POSITIVE_ONLY", POSITIVE_ONLY)
        g.use(op), g.use("sigmoid"), g.use("add")
        g.emit(f"{op}(sigmoid({x}) + 0.5)", s)
    elif kind == "exp":
        g.use("exp"), g.use("tanh")
        g.emit(f"exp(tanh({x}))", s)
    elif kind == "act":
        op = g.cyc("sorted(ACT_ATTRS)", sorted(ACT_ATTRS))
        kws = ", ".join(f"{a}={_lit(g.choice(op, a, vs))}" for a, vs in ACT_ATTRS[op].items())
        g.emit(f"{op}({x}, {kws})", s)
    elif kind == "binary":
        (a, sa), (b, _) = _same_shape_pair(g)
        op = g.cyc("sorted(BINARY)", sorted(BINARY))
        g.use(op)
        g.emit(f"{a} {BINARY[op]} {b}" if BINARY[op] else f"{op}({a}, {b})", sa)
    elif kind == "divpow":
        (a, sa), (b, _) = _same_shape_pair(g)
        op = g.rng.choice(["div", "pow"])
        g.use(op), g.use("sigmoid"), g.use("add"), g.use("tanh")
        g.emit(f"{a} / (sigmoid({b}) + 0.5)" if op == "div" else f"pow(sigmoid({a}) + 0.5, tanh({b}))", sa)
    elif kind == "input_only":
        xi = g.pick(inputs_only=True)
        op = g.cyc("INPUT_ONLY_UNARY", INPUT_ONLY_UNARY)
        g.use(op)
        g.emit(f"{op}({xi[0]})", xi[1])
    elif kind == "compare":
        (a, sa), (b, _) = _same_shape_pair(g, inputs_only=True)
        op = g.cyc("sorted(COMPARE)", sorted(COMPARE))
        g.use(op), g.use("where")
        same = [n for n, sh in g.pool if sh == sa]
        g.emit(f"where({a} {COMPARE[op]} {b}, {g.rng.choice(same)}, {g.rng.choice(same)})", sa)
    elif kind == "reduce":
        op = g.cyc("REDUCE", REDUCE)
        ax = g.choice(op, "axis", REDUCE_ATTRS["axis"])
        keep = g.choice(op, "keepdims", REDUCE_ATTRS["keepdims"])
        src = f"tanh({x})" if op == "prod" else x
        if ax == "none":
            g.lines.append(f"    {g.name()} = {op}({src}, keepdims={_lit(keep)})")   # a scalar: an output only
            g.outputs_extra.append(g.lines[-1].split("=")[0].strip())
            return
        axis = g.rng.randrange(1, len(s)) if ax == "int" else -g.rng.randrange(1, len(s))
        k = axis % len(s)
        shape = tuple(1 if i == k else d for i, d in enumerate(s)) if keep else tuple(d for i, d in enumerate(s) if i != k)
        g.emit(f"{op}({src}, axis={axis}, keepdims={_lit(keep)})", shape)
    elif kind == "arg":
        xi, si = g.pick(lambda sh: len(sh) >= 2, inputs_only=True)
        op = g.rng.choice(["argmax", "argmin"])
        keep = g.choice(op, "keepdims", [False, True])
        g.lines.append(f"    {g.name()} = {op}({xi}, axis=1, keepdims={_lit(keep)})")
        g.outputs_extra.append(g.lines[-1].split("=")[0].strip())
    elif kind == "softmax":
        op = g.rng.choice(["softmax", "log_softmax"])
        ax = g.choice(op, "axis", [-1, 1])
        g.emit(f"{op}({x}, axis={ax})", s)
    elif kind == "matmul":
        k = s[-1]
        j = g.rng.randint(2, 5)
        w = g.name("w")
        g.weights.append((w, (k, j)))     # a model input without a batch dimension
        g.use("matmul")
        g.emit(f"{x} @ {w}", s[:-1] + (j,))
    elif kind == "linear":
        units = g.rng.randint(2, 5)
        bias = g.choice("linear", "bias", [True, False])
        g.emit(f"dense({x}, {units}, bias={_lit(bias)})", s[:-1] + (units,))
    elif kind == "shape":
        op = g.rng.choice(["reshape", "transpose", "concat"])
        g.use(op)
        if op == "reshape":
            rest = 1
            for d in s[1:]:
                rest *= d
            g.emit(f"reshape({x}, [-1, {rest}])", (s[0], rest))
        elif op == "transpose" and len(s) >= 3:
            d0, d1 = g.rng.sample(range(1, len(s)), 2)      # the batch axis stays first
            axes = list(range(len(s)))
            axes[d0], axes[d1] = d1, d0
            g.emit(f"transpose({x}, {d0}, {d1})", tuple(s[a] for a in axes))
        elif op == "concat":
            ax = g.choice("concat", "axis", [0, 1, -1])
            same = [n for n, sh in g.pool if sh == s]
            k = ax % len(s)
            shape = tuple(2 * d if i == k else d for i, d in enumerate(s))
            if k == 0:   # the batch axis: the result is a model output, not a pool value (its batch is 2N)
                g.lines.append(f"    {g.name()} = concat([{x}, {g.rng.choice(same)}], axis={ax})")
                g.outputs_extra.append(g.lines[-1].split("=")[0].strip())
            else:
                g.emit(f"concat([{x}, {g.rng.choice(same)}], axis={ax})", shape)
    elif kind == "tri":
        xi = g.pick(lambda sh: len(sh) >= 2)
        if xi:
            op = g.rng.choice(["tril", "triu"])
            k = g.choice(op, "k", [0, 1, -1])
            g.emit(f"{op}({xi[0]}, k={k})", xi[1])
    elif kind in ("pool", "adaptive", "conv", "norm"):
        xi = g.pick(lambda sh: len(sh) == 4)
        if xi is None:
            xi = (g.new_input(("N", 2, 6, 6)), (2, 2, 6, 6))
        _spatial(g, kind, *xi)
    elif kind == "loss":
        (a, sa), (b, _) = _same_shape_pair(g)
        op = g.cyc("sorted(LOSSES)", sorted(LOSSES))
        kws = ", ".join(f"{at}={_lit(g.choice(op, at, vs))}" for at, vs in LOSSES[op].items())
        g.lines.append(f"    {g.name()} = {op}({a}, {b}, {kws})")
        g.outputs_extra.append(g.lines[-1].split("=")[0].strip())


def _spatial(g: _Gen, kind: str, x: str, s: tuple) -> None:
    n, c, h, w = s
    if kind == "pool":
        op = g.cyc("sorted(POOL2D)", sorted(POOL2D))
        a = {k: g.choice(op, k, vs) for k, vs in POOL2D[op].items()}
        k, st, p = a["kernel_size"], a["stride"] or a["kernel_size"], a["padding"]
        d = a.get("dilation", 1)
        p = min(p, k // 2)
        a["padding"] = p
        eff = d * (k - 1) + 1
        if eff > h + 2 * p or eff > w + 2 * p:
            return

        def out(L):
            num = L + 2 * p - eff
            o = (-(-num // st) if a["ceil_mode"] else num // st) + 1
            if a["ceil_mode"] and (o - 1) * st >= L + p:
                o -= 1
            return o
        kws = ", ".join(f"{kk}={_lit(v)}" for kk, v in a.items() if kk != "kernel_size")
        g.emit(f"{op}({x}, {k}, {kws})", (n, c, out(h), out(w)))
    elif kind == "adaptive":
        op = g.rng.choice(["adaptive_avg_pool2d", "adaptive_max_pool2d"])
        o = g.choice(op, "output_size", [1, 2])
        g.emit(f"{op}({x}, {o})", (n, c, o, o))
    elif kind == "conv":
        stride, pad = g.choice("conv2d", "stride", [1, 2]), g.choice("conv2d", "padding", [0, 1])
        dil, groups = g.choice("conv2d", "dilation", [1, 2]), g.choice("conv2d", "groups", [1, 2])
        if c % groups:
            groups = 1
        k = 3
        eff = dil * (k - 1) + 1
        if eff > min(h, w) + 2 * pad:
            return
        co = groups * g.rng.randint(1, 3)
        oh, ow = (h + 2 * pad - eff) // stride + 1, (w + 2 * pad - eff) // stride + 1
        g.emit(f"conv2d({x}, {co}, kernel={k}, stride={stride}, padding={pad}, dilation={dil}, groups={groups})",
               (n, co, oh, ow))
    else:
        op = g.rng.choice(["batch_norm", "layer_norm"])
        g.use(op)
        if op == "batch_norm":
            g.emit(f"batch_norm({x})", s)
            return
        # the ways to write a layer norm, in turn (cyc draws nothing from g.rng: other graphs stay as they were)
        form = g.cyc("LAYER_NORM_FORMS", LAYER_NORM_FORMS)
        if form == "functional":   # explicit weights: model inputs without a batch dimension
            wt, bs = g.name("w"), g.name("w")
            g.weights += [(wt, (h, w)), (bs, (h, w))]
            g.emit(f"layer_norm({x}, ({h}, {w}), {wt}, {bs})", s)
        elif form == "instance":
            g.use("group_norm")
            g.emit(f"instancenorm({x}, affine=true)", s)
        else:                      # the last two axes, or the channel axis (ConvNeXt's LayerNorm2d: transposes)
            g.use("transpose") if form == "channel" else None
            g.emit(f"layernorm({x}, dims=2)" if form == "trailing" else f"layernorm({x}, axis=1)", s)


def _part(seed: int, steps: int, prefix: str):
    g = _Gen(seed, prefix)
    g.new_input(("N", 3, 5, 5))
    g.new_input(("N", 3, 5, 5))
    g.new_input(("N", 4))
    g.new_input(("N", 4, 6, 6))
    g.new_input(("N", 4, 8))
    for _ in range(steps):
        before, g.pending = len(g.lines), set()
        _step(g)
        if len(g.lines) > before:
            g.used |= g.pending
    before, g.pending = len(g.lines), set()
    step_resample(g)
    if len(g.lines) > before:
        g.used |= g.pending
    produced = [n for n, _ in g.pool if n[len(prefix):].startswith("t")]
    outs = (produced[-2:] if produced else [g.pool[-1][0]]) + g.outputs_extra
    params = [f"{n}: f32[{', '.join(map(str, s))}]" for n, s in g.inputs + g.weights]
    params += [f"{n}: i64[{', '.join(map(str, s))}]" for n, s in g.ints]
    return params, g.lines, outs, g.used


def random_spec(seed: int | list, steps: int = 12) -> tuple[str, set]:
    """(the `.dln` text of a random model, the (op, attr, value) triples it uses).
    A list of seeds gives one model holding those graphs side by side (their
    own inputs and outputs): one compile for many graphs."""
    seeds = seed if isinstance(seed, list) else [seed]
    params, lines, outs, used = [], [], [], set()
    for sd in seeds:
        p, ln, o, u = _part(sd, steps, f"g{sd}_" if len(seeds) > 1 else "")
        params += p
        lines += ln
        outs += o
        used |= u
    name = "_".join(map(str, seeds)) if len(seeds) <= 3 else f"{seeds[0]}_to_{seeds[-1]}"
    text = (f"# random graph(s), seed(s) {', '.join(map(str, seeds))}: tests/fuzz/random_graphs.py\n"
            f"model Random{name}({', '.join(params)}) {{\n    example N = 2\n" + "\n".join(lines)
            + f"\n    return {', '.join(outs)}\n}}\n")
    return text, used
