"""Builtins for shapes, constants, pooling, attention, losses and randomness."""
from __future__ import annotations

from ..compiler.dims import Dim, prod
from ..compiler.dims import dim as _dim
from ..compiler.types import DType
from ..errors import DlcLimitError, DlcValueError
from .builtins import _dtype, builtin
from .values import describe, is_int, is_tensor


def _shape_args(F, dims, what="shape"):
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    out = []
    for d in dims:
        if isinstance(d, bool) or not is_int(d):
            F.fail(f"{F.fname}: {what} entries must be ints, got {describe(d)}")
        out.append(_dim(d))
    return tuple(out)


@builtin()
def reshape(F, x, *shape):
    """reshape(x, N, -1) or reshape(x, (N, -1)); one -1 is inferred."""
    x = F.tensor(x)
    s = _shape_args(F, shape)
    for d in s:
        if isinstance(d, int) and d < -1 or d == 0:
            F.fail(f"reshape: invalid size {d}", "sizes are positive, or -1 once", cls=DlcValueError)
    return F.op("reshape", x, shape=s)


@builtin()
def flatten(F, x, start=1, end=-1):
    """Flatten dims start..end into one (torch.flatten; start defaults to 1)."""
    x = F.tensor(x)
    r = x.type.rank
    if r == 0:
        return F.op("reshape", x, shape=(1,))
    s, e = F.axis(start, x, "start"), F.axis(end, x, "end")
    if s > e:
        F.fail(f"flatten: start {start} is after end {end}")
    shp = x.type.shape
    new = tuple(shp[:s]) + (prod(shp[s:e + 1]),) + tuple(shp[e + 1:])
    return F.op("reshape", x, shape=new)


@builtin()
def transpose(F, x, dim0=-2, dim1=-1):
    """Swap two axes (the last two by default), as torch.transpose."""
    x = F.tensor(x)
    if x.type.rank < 2:
        F.fail(f"transpose needs rank >= 2, got {x.type}")
    a, b = F.axis(dim0, x, "dim0"), F.axis(dim1, x, "dim1")
    axes = list(range(x.type.rank))
    axes[a], axes[b] = axes[b], axes[a]
    return F.op("transpose", x, axes=tuple(axes))


@builtin()
def permute(F, x, *axes):
    x = F.tensor(x)
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    ax = tuple(F.axis(a, x) for a in axes)
    if sorted(ax) != list(range(x.type.rank)):
        F.fail(f"permute: {tuple(axes)} is not a permutation of the {x.type.rank} axes of {x.type}")
    return F.op("transpose", x, axes=ax)


@builtin()
def squeeze(F, x, axis):
    x = F.tensor(x)
    a = F.axis(axis, x)
    if x.type.shape[a] != 1:
        F.fail(f"squeeze: axis {axis} of {x.type} has size {x.type.shape[a]}, not 1")
    return F.op("reshape", x, shape=tuple(d for i, d in enumerate(x.type.shape) if i != a))


@builtin()
def unsqueeze(F, x, axis):
    x = F.tensor(x)
    r = x.type.rank + 1
    a = F.int(axis, "axis", minimum=None)
    if not -r <= a < r:
        F.fail(f"unsqueeze: axis {a} out of range for {x.type}")
    a %= r
    s = list(x.type.shape)
    s.insert(a, 1)
    return F.op("reshape", x, shape=tuple(s))


def _tensors(F, xs):
    if len(xs) == 1 and isinstance(xs[0], (tuple, list)):
        xs = tuple(xs[0])
    if not xs:
        F.fail(f"{F.fname} needs at least one tensor")
    return [F.tensor(x, "operand") for x in xs]


@builtin(aliases=("cat",))
def concat(F, *xs, axis=0):
    xs = _tensors(F, xs)
    return F.op("concat", *xs, axis=F.axis(axis, xs[0]))


@builtin()
def stack(F, *xs, axis=0):
    xs = _tensors(F, xs)
    r = xs[0].type.rank + 1
    a = F.int(axis, "axis", minimum=None) % r
    ex = []
    for x in xs:
        s = list(x.type.shape)
        s.insert(a, 1)
        ex.append(F.op("reshape", x, shape=tuple(s)))
    return F.op("concat", *ex, axis=a)


@builtin(aliases=("chunk",))
def split(F, x, sections, axis=0):
    """split(x, 4, axis=1) into 4 equal parts, or split(x, [a, b], axis=1) by sizes."""
    x = F.tensor(x)
    if isinstance(sections, (list, tuple)):
        sections = [F.dim(s, "size") for s in sections]
    else:
        sections = F.int(sections, "sections")
        _check_equal_parts(F, x, sections, axis)
    from .elaborate import MAX_ITERATIONS
    if (len(sections) if isinstance(sections, list) else sections) > MAX_ITERATIONS:
        F.fail(f"split: {sections if isinstance(sections, int) else len(sections)} sections are far too many",
               cls=DlcLimitError)
    out = F.op("split", x, sections=sections, axis=F.axis(axis, x))
    return out if isinstance(out, tuple) else (out,)


def _check_equal_parts(F, x, n: int, axis) -> None:
    """`split(x, 58, axis=1)` on 100 channels: say that n counts parts (torch.chunk),
    not a part size (torch.split), and how to write the sizes."""
    d = x.type.shape[F.axis(axis, x)]
    if not isinstance(d, int) or d % n == 0:
        return
    sizes = [n] * (d // n) + ([d % n] if d % n else [])
    shown = ", ".join(map(str, sizes)) if len(sizes) <= 8 else f"{n}, {n}, ..., {d % n}"
    F.fail(f"split: axis {axis} of {x.type} has {d} elements, which do not divide into {n} equal parts",
           f"dlc's split(x, n) cuts n equal parts, like torch.chunk; for parts of size {n}, as "
           f"torch.split(x, {n}) cuts, give the sizes as a list: split(x, [{shown}], axis={axis})")


@builtin()
def pad(F, x, pad, mode="constant", value=0.0):
    """torch.nn.functional.pad: `pad` lists (left, right) pairs from the last axis."""
    x = F.tensor(x)
    p = F.ints(pad, len(pad) if isinstance(pad, (list, tuple)) else 2, "pad", minimum=0)
    F.choice(mode, ("constant", "reflect", "replicate", "circular"), "mode")
    return F.op("pad", x, pad=p, mode=mode, value=F.number(value, "value"))


@builtin()
def gather(F, x, axis, index):
    x = F.tensor(x)
    return F.op("gather", x, F.tensor(index, "index"), axis=F.axis(axis, x))


@builtin()
def index_select(F, x, axis, index):
    x = F.tensor(x)
    return F.op("index_select", x, F.tensor(index, "index"), axis=F.axis(axis, x))


@builtin()
def expand(F, x, *shape):
    return F.op("expand", F.tensor(x), shape=_shape_args(F, shape))


@builtin()
def tril(F, x, k=0):
    return F.op("tril", F.tensor(x), k=F.int(k, "k", minimum=None))


@builtin()
def triu(F, x, k=0):
    return F.op("triu", F.tensor(x), k=F.int(k, "k", minimum=None))


@builtin()
def one_hot(F, indices, num_classes, dtype=DType.f32):
    return F.op("one_hot", F.tensor(indices, "indices"), num_classes=F.int(num_classes, "num_classes"),
                dtype=_dtype(F, dtype).numpy_name)


@builtin()
def arange(F, start, stop=None, step=1, dtype=DType.i64):
    if stop is None:
        start, stop = 0, start
    # start/stop may be symbolic (arange(T) for positions over a symbolic length)
    def bound(v, what):
        return v if isinstance(v, Dim) and not v.is_const else F.int(v, what, None)
    return F.op("arange", start=bound(start, "start"), stop=bound(stop, "stop"),
                step=F.int(step, "step", None), dtype=_dtype(F, dtype).numpy_name)


@builtin()
def full(F, shape, value, dtype=DType.f32):
    return F.op("full", shape=_shape_args(F, (shape,)), value=F.number(value, "value"),
                dtype=_dtype(F, dtype).numpy_name)


@builtin()
def zeros(F, *shape, dtype=DType.f32):
    return F.op("full", shape=_shape_args(F, shape), value=0.0, dtype=_dtype(F, dtype).numpy_name)


@builtin()
def ones(F, *shape, dtype=DType.f32):
    return F.op("full", shape=_shape_args(F, shape), value=1.0, dtype=_dtype(F, dtype).numpy_name)


@builtin()
def zeros_like(F, x):
    x = F.tensor(x)
    return F.op("full", shape=x.type.shape, value=0.0, dtype=x.type.dtype.numpy_name)


@builtin()
def ones_like(F, x):
    x = F.tensor(x)
    return F.op("full", shape=x.type.shape, value=1.0, dtype=x.type.dtype.numpy_name)


@builtin()
def causal_mask(F, length):
    """A bool [L, L] mask, true on and below the diagonal (may attend)."""
    L = F.dim(length, "length")
    return F.op("tril", F.op("full", shape=(L, L), value=1.0, dtype="bool"), k=0)


@builtin()
def sinusoidal_positions(F, length, dim, dtype=DType.f32):
    """Vaswani et al.'s fixed positional encoding, [length, dim]."""
    return F.op("sinusoidal_positions", length=F.dim(length, "length"), dim=F.int(dim, "dim"),
                dtype=_dtype(F, dtype).numpy_name)


# ------------------------------------------------------------------- pooling
def _pool(kind, nd):
    def fn(F, x, kernel, stride=None, padding=0, ceil_mode=False, **extra):
        x = F.float_tensor(x)
        k = F.ints(kernel, nd, "kernel")
        s = F.ints(stride, nd, "stride") if stride is not None else k
        p = F.ints(padding, nd, "padding", minimum=0)
        attrs = dict(kernel_size=k if nd > 1 else k[0], stride=s if nd > 1 else s[0],
                     padding=p if nd > 1 else p[0], ceil_mode=F.boolean(ceil_mode, "ceil_mode"))
        d = F.ints(extra.get("dilation", 1), nd, "dilation")
        if kind == "avg":
            attrs["count_include_pad"] = F.boolean(extra.get("count_include_pad", True), "count_include_pad")
        if kind == "max" or any(v != 1 for v in d):     # a dilated average: ONNX AveragePool's dilations
            attrs["dilation"] = d if nd > 1 else d[0]
        return F.op(f"{kind}_pool{nd}d", x, **attrs)
    return fn


def _reg_pool(kind, nd):
    base = _pool(kind, nd)
    if kind == "max":
        def fn(F, x, kernel, stride=None, padding=0, dilation=1, ceil_mode=False):
            return base(F, x, kernel, stride, padding, ceil_mode, dilation=dilation)
    else:
        def fn(F, x, kernel, stride=None, padding=0, ceil_mode=False, count_include_pad=True, dilation=1):
            return base(F, x, kernel, stride, padding, ceil_mode, count_include_pad=count_include_pad,
                        dilation=dilation)
    fn.__doc__ = f"{kind} pooling over {nd} spatial dims (stride defaults to the kernel)"
    builtin(f"{kind}pool{nd}d", aliases=(f"{kind}_pool{nd}d",))(fn)


for _k in ("max", "avg"):
    for _nd in (1, 2):
        _reg_pool(_k, _nd)


@builtin(aliases=("adaptive_avg_pool2d",))
def adaptive_avgpool2d(F, x, size):
    return F.op("adaptive_avg_pool2d", F.float_tensor(x), output_size=F.ints(size, 2, "size"))


@builtin(aliases=("adaptive_max_pool2d",))
def adaptive_maxpool2d(F, x, size):
    return F.op("adaptive_max_pool2d", F.float_tensor(x), output_size=F.ints(size, 2, "size"))


@builtin(aliases=("adaptive_avg_pool1d",))
def adaptive_avgpool1d(F, x, size):
    return F.op("adaptive_avg_pool1d", F.float_tensor(x), output_size=F.int(size, "size"))


@builtin(aliases=("global_avg_pool",))
def global_avgpool(F, x):
    """Mean over all spatial dims: [N, C, ...] -> [N, C]."""
    x = F.float_tensor(x)
    if x.type.rank < 3:
        F.fail(f"global_avgpool needs [N, C, ...], got {x.type}")
    return F.op("mean", x, axis=tuple(range(2, x.type.rank)), keepdims=False)


@builtin(aliases=("lrn",))
def local_response_norm(F, x, size, alpha=1e-4, beta=0.75, k=1.0):
    return F.op("local_response_norm", F.float_tensor(x), size=F.int(size, "size"),
                alpha=F.number(alpha, "alpha"), beta=F.number(beta, "beta"), k=F.number(k, "k"))


@builtin()
def dropout(F, x, p=0.5):
    """Zero elements with probability p while training; identity in eval mode."""
    x = F.float_tensor(x)
    p = F.prob(p)
    if not F.training or p == 0.0:
        return x
    return F.op("dropout", x, p=p, training=True, seed=F.seed())


@builtin(aliases=("attention", "sdpa"))
def scaled_dot_product_attention(F, q, k, v, mask=None, causal=False, scale=None):
    """softmax(q k^T * scale + mask) v; a bool mask is true where attending is allowed."""
    return F.op("scaled_dot_product_attention", F.float_tensor(q, "q"), F.float_tensor(k, "k"),
                F.float_tensor(v, "v"), F.tensor(mask, "mask") if mask is not None else None,
                is_causal=F.boolean(causal, "causal"), scale=None if scale is None else F.number(scale, "scale"))


# ------------------------------------------------------------------- losses
_RED = ("mean", "sum", "none")


def _loss2(opname):
    def fn(F, input, target, reduction="mean"):
        return F.op(opname, F.float_tensor(input), F.tensor(target, "target"),
                    reduction=F.choice(reduction, _RED, "reduction"))
    return fn


for _n, _al in (("mse_loss", ("mse",)), ("l1_loss", ("l1",))):
    builtin(_n, aliases=_al)(_loss2(_n))


@builtin()
def smooth_l1_loss(F, input, target, reduction="mean", beta=1.0):
    return F.op("smooth_l1_loss", F.float_tensor(input), F.tensor(target, "target"),
                reduction=F.choice(reduction, _RED, "reduction"), beta=F.number(beta, "beta"))


@builtin(aliases=("bce",))
def binary_cross_entropy(F, input, target, weight=None, reduction="mean"):
    return F.op("binary_cross_entropy", F.float_tensor(input), F.tensor(target, "target"), weight,
                reduction=F.choice(reduction, _RED, "reduction"))


@builtin(aliases=("bce_with_logits",))
def binary_cross_entropy_with_logits(F, input, target, weight=None, pos_weight=None, reduction="mean"):
    return F.op("binary_cross_entropy_with_logits", F.float_tensor(input), F.tensor(target, "target"),
                weight, pos_weight, reduction=F.choice(reduction, _RED, "reduction"))


@builtin()
def cross_entropy(F, input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy with integer class targets (torch's F.cross_entropy)."""
    return F.op("cross_entropy", F.float_tensor(input), F.tensor(target, "target"), weight,
                ignore_index=F.int(ignore_index, "ignore_index", None),
                reduction=F.choice(reduction, _RED, "reduction"),
                label_smoothing=F.prob(label_smoothing, "label_smoothing"))


@builtin()
def nll_loss(F, input, target, weight=None, ignore_index=-100, reduction="mean"):
    return F.op("nll_loss", F.float_tensor(input), F.tensor(target, "target"), weight,
                ignore_index=F.int(ignore_index, "ignore_index", None),
                reduction=F.choice(reduction, _RED, "reduction"))


@builtin()
def kl_div(F, input, target, reduction="mean", log_target=False):
    return F.op("kl_div", F.float_tensor(input), F.float_tensor(target, "target"),
                reduction=F.choice(reduction, _RED + ("batchmean",), "reduction"),
                log_target=F.boolean(log_target, "log_target"))


# ------------------------------------------------------------------- random
@builtin()
def randn(F, *shape, dtype=DType.f32):
    """Standard-normal samples, seeded per run and per call site."""
    return F.op("randn", shape=_shape_args(F, shape), seed=F.seed(), dtype=_dtype(F, dtype).numpy_name)


@builtin(aliases=("rand",))
def uniform(F, *shape, low=0.0, high=1.0, dtype=DType.f32):
    return F.op("uniform", shape=_shape_args(F, shape), low=F.number(low, "low"),
                high=F.number(high, "high"), seed=F.seed(), dtype=_dtype(F, dtype).numpy_name)


@builtin()
def randn_like(F, x):
    x = F.float_tensor(x)
    return F.op("randn", shape=x.type.shape, seed=F.seed(), dtype=x.type.dtype.numpy_name)


@builtin()
def rand_like(F, x):
    x = F.float_tensor(x)
    return F.op("uniform", shape=x.type.shape, low=0.0, high=1.0, seed=F.seed(),
                dtype=x.type.dtype.numpy_name)


from . import layers  # noqa: E402,F401
from . import scan  # noqa: E402,F401
