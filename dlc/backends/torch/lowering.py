"""Per-op lowering of the dlc IR to PyTorch source text.

`LOWERING[op]` turns one node into the Python line(s) a person would write
with `torch` and `F` (torch.nn.functional):

    LOWERING["conv2d"](["x", "w", "b"], {"stride": (2, 2), "padding": (1, 1), ...}, ["y"])
    -> 'y = F.conv2d(x, w, b, stride=(2, 2), padding=(1, 1))'

Signature: ``fn(args, attrs, out_names, *, dims=None, in_types=None) -> str``.

* `args`: the operands as source expressions (variable names), None for an
  absent optional operand.  Variadic ops (concat, rnn, lstm, gru) get them all.
* `attrs`: the node's attributes, rendered with `render` (never interpolated).
* `out_names`: the variables the result(s) are assigned to.
* `dims`: symbolic dimension name -> source expression (``{"N": "N"}`` when
  the generated function has bound ``N = x.shape[0]``); attributes holding
  `Dim`s (``reshape(shape=(N, 400))``) are rendered through it.
* `in_types`: the operands' `TensorType`s when known.  They only make the
  code shorter (``F.pad`` instead of the rank-agnostic ``_pad`` helper, no
  ``.long()`` on an index that already is int64); without them the emitted
  code is generic and still correct.

The emitted code may use the variables ``seed`` (the run seed, combined with
each random op's `seed` attribute as the NumPy backend does) and ``device``
(where operand-free ops create tensors), and the helpers in `HELPERS`, which
the code generator defines once in the generated file when they are used.

Semantics follow the NumPy reference kernels; where they cannot be matched
bit for bit it is by design: dropout/randn/uniform draw from torch's
generator (same distribution, other values), and bfloat16 is a real
torch.bfloat16 tensor (the NumPy backend stores it as rounded float32).
"""
from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable

import numpy as np

from ...compiler.dims import Dim, FloorDiv
from ...compiler.ops import OPS
from ...compiler.types import DType, TensorType

__all__ = ["HELPERS", "LOWERING", "helpers_used", "render", "string_literal", "torch_dtype"]

# ---------------------------------------------------------------------------
# safe literal rendering
# ---------------------------------------------------------------------------

# characters kept as they are in string literals; everything else is escaped,
# so no text from a model (names, paths) reaches the source unescaped -- not
# even quotes, backslashes or bidirectional-override characters
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:/- ")


def string_literal(s: str) -> str:
    """A double-quoted Python string literal for `s` with every character
    outside ``[A-Za-z0-9_.:/- ]`` written as an escape (``\\x27``)."""
    if not isinstance(s, str):
        raise TypeError(f"not a string: {type(s).__name__}")
    out = []
    for c in s:
        o = ord(c)
        if c in _PLAIN:
            out.append(c)
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    return '"' + "".join(out) + '"'


_TORCH_DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32",
                 "float64": "float64", "int8": "int8", "int16": "int16", "int32": "int32",
                 "int64": "int64", "uint8": "uint8", "bool": "bool",
                 "f16": "float16", "bf16": "bfloat16", "f32": "float32", "f64": "float64",
                 "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64", "u8": "uint8"}


def torch_dtype(dtype) -> str:
    """``torch.float32`` for a dtype attribute ("float32", "f32" or a `DType`)."""
    name = dtype.numpy_name if isinstance(dtype, DType) else dtype
    if not isinstance(name, str) or name not in _TORCH_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}")
    return "torch." + _TORCH_DTYPES[name]


def _mono_key(mono: tuple) -> str:
    return "*".join(a if isinstance(a, str) else str(a) for a in mono)


def _dim_src(d: Dim, dims: dict[str, str]) -> str:
    """Source for a symbolic dimension: ``4 * N + 4``, ``(H + 1) // 2``."""
    if d.is_const:
        return repr(int(d.value))
    parts: list[tuple[int, str]] = []
    for mono in sorted(d.terms, key=lambda m: (-len(m), _mono_key(m))):
        c = d.terms[mono]
        factors = []
        for a in mono:
            if isinstance(a, FloorDiv):
                factors.append(f"({_dim_src(a.num, dims)}) // {int(a.den)}")
            else:
                if a not in dims:
                    raise ValueError(f"no source expression for the symbolic dimension {a!r}")
                factors.append(dims[a])
        if not factors:
            body = repr(abs(int(c)))
        elif abs(c) == 1:
            body = " * ".join(factors)
        else:
            body = " * ".join([repr(abs(int(c)))] + factors)
        parts.append((c, body))
    out = ("-" if parts[0][0] < 0 else "") + parts[0][1]
    for c, body in parts[1:]:
        out += (" - " if c < 0 else " + ") + body
    return out


def render(value, dims: dict[str, str] | None = None) -> str:
    """Python source for an attribute value.

    Only None, bools, ints, floats (inf/nan as ``float("inf")``), strings
    (`string_literal`), `Dim`s (through `dims`: symbol -> source expression),
    `DType`s (``torch.float32``) and tuples/lists of these are accepted;
    anything else raises TypeError, so no unchecked text becomes code.
    """
    dims = dims or {}
    if value is None:
        return "None"
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, numbers.Integral):
        return repr(int(value))
    if isinstance(value, numbers.Real):
        f = float(value)
        if math.isnan(f):
            return 'float("nan")'
        if math.isinf(f):
            return 'float("inf")' if f > 0 else '-float("inf")'
        return repr(f)
    if isinstance(value, str):
        return string_literal(value)
    if isinstance(value, Dim):
        return _dim_src(value, dims)
    if isinstance(value, DType):
        return torch_dtype(value)
    if isinstance(value, tuple):
        items = [render(v, dims) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(render(v, dims) for v in value) + "]"
    raise TypeError(f"cannot render an attribute value of type {type(value).__name__}")


# ---------------------------------------------------------------------------
# helpers the generated file defines once when used
# ---------------------------------------------------------------------------

HELPERS: dict[str, str] = {
    "_generator": '''\
def _generator(seed, key, device):
    """A generator seeded from the run seed and an op's own seed (the NumPy backend's (seed, key))."""
    return torch.Generator(device=device).manual_seed(hash((int(seed), int(key))) & 0x7FFF_FFFF_FFFF_FFFF)
''',
    "_dropout": '''\
def _dropout(x, p, generator):
    """Inverted dropout whose mask comes from `generator`: the same seed drops the same elements."""
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * (keep.to(x.dtype) * (1.0 / (1.0 - p)))
''',
    "_pad": '''\
def _pad(x, pad, mode):
    """F.pad in reflect/replicate/circular mode for any rank: leading dims are folded into one."""
    k = len(pad) // 2
    if x.dim() in (k + 1, k + 2):
        return F.pad(x, pad, mode=mode)
    lead = x.shape[:x.dim() - k]
    y = F.pad(x.reshape(1, -1, *x.shape[x.dim() - k:]), pad, mode=mode)
    return y.reshape(*lead, *y.shape[2:])
''',
    "_sinusoidal_positions": '''\
def _sinusoidal_positions(length, dim, dtype, device):
    """The Transformer's sin/cos position table (Vaswani et al., 2017), computed in float64."""
    pos = torch.arange(length, dtype=torch.float64, device=device)[:, None]
    angle = pos / 10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim)
    pe = torch.zeros(length, dim, dtype=torch.float64, device=device)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, :dim // 2])
    return pe.to(dtype)
''',
    "_overflowed": """\
def _overflowed(rstd):
    \"\"\"Whether a norm kernel's 1/sqrt(var + eps) shows a variance that overflowed (0) or a NaN: torch's
    kernels then give NaN or 0 (layer_norm([1e30, 0, 0, 0, 0])) where dlc gives [2, -0.5, ...].
    One look at the per-slice statistics, not at the data.\"\"\"
    return bool(((rstd == 0) | torch.isnan(rstd)).any())
""",
    "_scaled_normalize": """\
def _scaled_normalize(x, dims, eps):
    \"\"\"(x - mean) / sqrt(var + eps) over `dims`, computed on x / s with s a power of two per slice
    (exact; the squares stay finite) and a two-pass variance; also the scaled mean, variance and s.\"\"\"
    amax = x.detach().abs().amax(dim=dims, keepdim=True)
    one = torch.ones_like(amax)
    s = torch.where((amax > 1) & torch.isfinite(amax), torch.ldexp(one, torch.frexp(amax)[1] - 1), one)
    xs = x / s
    m = xs.mean(dims, keepdim=True)
    d = xs - m
    v = (d * d).mean(dims, keepdim=True)
    return d * torch.rsqrt(v + eps / (s * s)), m, v, s
""",
    "_layer_norm": """\
def _layer_norm(x, shape, weight=None, bias=None, eps=1e-5):
    \"\"\"F.layer_norm(x, shape, weight, bias, eps), through its kernel (torch.native_layer_norm), which
    also returns 1/sqrt(var + eps) per slice; where that shows an overflow, recomputed exactly.\"\"\"
    y, _, rstd = torch.native_layer_norm(x, shape, weight, bias, eps)
    if x.numel() == 0 or not _overflowed(rstd):
        return y
    y = _scaled_normalize(x, tuple(range(-len(shape), 0)), eps)[0]
    y = y if weight is None else y * weight
    return y if bias is None else y + bias
""",
    "_group_norm": """\
def _group_norm(x, groups, weight=None, bias=None, eps=1e-5):
    \"\"\"F.group_norm(x, groups, weight, bias, eps), through its kernel (torch.native_group_norm), which
    also returns 1/sqrt(var + eps) per slice; where that shows an overflow, recomputed exactly.\"\"\"
    n, c = x.shape[0], x.shape[1]
    y, _, rstd = torch.native_group_norm(x, weight, bias, n, c, x[0, 0].numel(), groups, eps)
    if x.numel() == 0 or not _overflowed(rstd):
        return y
    y = _scaled_normalize(x.reshape(n, groups, -1), (2,), eps)[0].reshape(x.shape)
    view = (1, -1) + (1,) * (x.dim() - 2)
    y = y if weight is None else y * weight.reshape(view)
    return y if bias is None else y + bias.reshape(view)
""",
    "_batch_norm": """\
def _batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    \"\"\"F.batch_norm; in training, where the batch variance overflows, the statistics are recomputed
    exactly by _scaled_normalize and the running statistics updated from them, in place as F.batch_norm.\"\"\"
    n = x.numel() // max(x.shape[1], 1)
    if not training or n <= 1:
        return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    before = [None if t is None else t.clone() for t in (running_mean, running_var)]
    y, _, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
    if not _overflowed(invstd):
        return y
    y, m, v, s = _scaled_normalize(x, (0,) + tuple(range(2, x.dim())), eps)
    view = (1, -1) + (1,) * (x.dim() - 2)
    y = y if weight is None else y * weight.reshape(view)
    y = y if bias is None else y + bias.reshape(view)
    with torch.no_grad():
        if running_mean is not None:
            new = before[0] * (1 - momentum) + (m * s).flatten().to(before[0].dtype) * momentum
            running_mean.copy_(new)
        if running_var is not None:
            unbiased = (v * s * s).flatten() * (n / (n - 1))
            running_var.copy_(before[1] * (1 - momentum) + unbiased.to(before[1].dtype) * momentum)
    return y
""",
    "_norm_module": """\
def _norm_module(mod, x):
    \"\"\"mod(x) for an nn.LayerNorm, nn.GroupNorm or nn.BatchNorm*, through the helpers above: where
    torch's kernel overflows (NaN or 0), the true answer.\"\"\"
    if isinstance(mod, nn.LayerNorm):
        return _layer_norm(x, mod.normalized_shape, mod.weight, mod.bias, mod.eps)
    if isinstance(mod, nn.GroupNorm):
        return _group_norm(x, mod.num_groups, mod.weight, mod.bias, mod.eps)
    if not (mod.training and mod.track_running_stats):
        return mod(x)
    mod.num_batches_tracked.add_(1)     # nn.BatchNorm's own bookkeeping in training
    factor = 1.0 / float(mod.num_batches_tracked) if mod.momentum is None else mod.momentum
    return _batch_norm(x, mod.running_mean, mod.running_var, mod.weight, mod.bias, True, factor, mod.eps)
""",
    "_rnn": '''\
def _rnn(x, h0, weights, *, nonlinearity="tanh", num_layers=1, bias=True, bidirectional=False,
         batch_first=False):
    """torch.nn.RNN on flat weights (w_ih, w_hh[, b_ih, b_hh] per layer and direction); (y, h_n)."""
    if h0 is None:
        batch = x.shape[0] if batch_first else x.shape[1]
        h0 = x.new_zeros(num_layers * (2 if bidirectional else 1), batch, weights[1].shape[1])
    rnn = torch.rnn_tanh if nonlinearity == "tanh" else torch.rnn_relu
    return rnn(x, h0, weights, bias, num_layers, 0.0, False, bidirectional, batch_first)
''',
    "_lstm": '''\
def _lstm(x, h0, c0, weights, *, num_layers=1, bias=True, bidirectional=False, batch_first=False):
    """torch.nn.LSTM on flat weights (w_ih, w_hh[, b_ih, b_hh][, w_hr] per layer and direction);
    (y, h_n, c_n).  A projected LSTM is recognised by h0 being narrower than c0."""
    batch = x.shape[0] if batch_first else x.shape[1]
    layers = num_layers * (2 if bidirectional else 1)
    if h0 is None:
        h0 = x.new_zeros(layers, batch, weights[1].shape[1])
    if c0 is None:
        c0 = x.new_zeros(layers, batch, weights[1].shape[0] // 4)
    return torch.lstm(x, (h0, c0), weights, bias, num_layers, 0.0, False, bidirectional, batch_first)
''',
    "_gru": '''\
def _gru(x, h0, weights, *, num_layers=1, bias=True, bidirectional=False, batch_first=False):
    """torch.nn.GRU on flat weights (w_ih, w_hh[, b_ih, b_hh] per layer and direction); (y, h_n)."""
    if h0 is None:
        batch = x.shape[0] if batch_first else x.shape[1]
        h0 = x.new_zeros(num_layers * (2 if bidirectional else 1), batch, weights[1].shape[1])
    return torch.gru(x, h0, weights, bias, num_layers, 0.0, False, bidirectional, batch_first)
''',
}


def helpers_used(source: str) -> list[str]:
    """The helpers `source` calls (directly or through another helper), in `HELPERS` order."""
    need: set[str] = set()
    todo = [source]
    while todo:
        text = todo.pop()
        for name, src in HELPERS.items():
            if name not in need and re.search(r"(?<![A-Za-z0-9_])" + name + r"\(", text):
                need.add(name)
                todo.append(src)
    return [n for n in HELPERS if n in need]


# ---------------------------------------------------------------------------
# the lowering table
# ---------------------------------------------------------------------------

LOWERING: dict[str, Callable[..., str]] = {}


class _Lines(str):
    """Complete statements (not an expression to assign)."""


class _Op:
    """What one lowering sees: operands, attributes, outputs and helpers."""

    def __init__(self, args, attrs, outs, dims, in_types):
        self.args = list(args)
        self.attrs = attrs
        self.outs = list(outs)
        self.dims = dims or {}
        self.types = list(in_types) if in_types is not None else None

    def __getitem__(self, i):
        return self.args[i] if i < len(self.args) else None

    def r(self, v) -> str:
        return render(v, self.dims)

    def a(self, key) -> str:
        return render(self.attrs[key], self.dims)

    def type(self, i) -> TensorType | None:
        if self.types is None or i >= len(self.types):
            return None
        return self.types[i]

    def rank(self, i) -> int | None:
        t = self.type(i)
        return t.rank if t is not None else None

    def kw(self, *specs) -> list[str]:
        """``name=value`` for the attributes that differ from their defaults.

        Each spec is (attr, default) or (attr, default, keyword name)."""
        out = []
        for spec in specs:
            key, default = spec[0], spec[1]
            name = spec[2] if len(spec) > 2 else key
            v = self.attrs.get(key, default)
            if not _is_default(v, default):
                out.append(f"{name}={self.r(v)}")
        return out

    def long(self, i) -> str:
        """Operand i as an int64 tensor (torch wants LongTensor class targets and one-hot indices)."""
        t = self.type(i)
        if t is not None and t.dtype == DType.i64:
            return self[i]
        return f"{self[i]}.long()"


def _is_default(v, default) -> bool:
    """Whether attribute value `v` is the op's default (a uniform tuple counts: (1, 1) == 1)."""
    if isinstance(v, (list, tuple)):
        if isinstance(default, (list, tuple)):
            return tuple(v) == tuple(default)
        return len(v) > 0 and all(_is_default(x, default) for x in v)
    if default is None or v is None:
        return v is None and default is None
    if isinstance(v, (bool, np.bool_)) or isinstance(default, bool):
        return isinstance(v, (bool, np.bool_)) and isinstance(default, bool) and bool(v) == default
    if isinstance(v, (Dim, str)) or isinstance(default, str):
        return isinstance(v, str) and v == default
    return isinstance(v, numbers.Real) and v == default


def _call(fn: str, *parts) -> str:
    return f"{fn}({', '.join(p for p in parts if p)})"


def _trim_none(args: list) -> list[str]:
    """Positional optional operands: trailing None dropped, inner ones written as None."""
    args = list(args)
    while args and args[-1] is None:
        args.pop()
    return ["None" if a is None else a for a in args]


def _register(names, multi: bool = False):
    """Register `fn(o: _Op) -> expression | _Lines` for `names`.

    With `multi` the expression is a sequence with one item per output."""
    if isinstance(names, str):
        names = (names,)

    def deco(fn):
        def lower(args, attrs, out_names, *, dims=None, in_types=None) -> str:
            o = _Op(args, attrs, out_names, dims, in_types)
            src = fn(o)
            if isinstance(src, _Lines):
                return str(src)
            outs = list(out_names)
            if multi:
                lhs = f"({outs[0]},)" if len(outs) == 1 else ", ".join(outs)
            else:
                if len(outs) != 1:
                    raise ValueError(f"{names[0]} has one result, got {len(outs)} names")
                lhs = outs[0]
            return f"{lhs} = {src}"
        for n in names:
            lower.__name__ = f"lower_{n}"
            LOWERING[n] = lower
        lower.__doc__ = fn.__doc__
        return fn
    return deco


# elementwise ---------------------------------------------------------------

_UNARY = {
    "exp": "torch.exp", "log": "torch.log", "log1p": "torch.log1p", "sqrt": "torch.sqrt",
    "rsqrt": "torch.rsqrt", "reciprocal": "torch.reciprocal", "sin": "torch.sin", "cos": "torch.cos",
    "tanh": "torch.tanh", "sigmoid": "torch.sigmoid", "erf": "torch.erf", "floor": "torch.floor",
    "ceil": "torch.ceil", "relu": "torch.relu", "relu6": "F.relu6", "selu": "F.selu", "silu": "F.silu",
    "hardsigmoid": "F.hardsigmoid", "abs": "torch.abs",
    "square": "torch.square", "sign": "torch.sign", "logical_not": "torch.logical_not",
}
for _name, _fn in _UNARY.items():
    _register(_name)(lambda o, _fn=_fn: f"{_fn}({o[0]})")


@_register("neg")
def _(o):
    return f"-{o[0]}"


# dlc's attribute defaults are PyTorch's: write only the attributes that differ
for _name in ("leaky_relu", "elu", "gelu", "softplus", "hardtanh"):
    _register(_name)(lambda o, _n=_name: _call(f"F.{_n}", o[0], *o.kw(*OPS[_n].attrs.items())))


@_register("cast")
def _(o):
    return f"{o[0]}.to({torch_dtype(o.attrs['dtype'])})"


_BINOP = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**",
          "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
for _name, _sym in _BINOP.items():
    _register(_name)(lambda o, _s=_sym: f"{o[0]} {_s} {o[1]}")
for _name in ("maximum", "minimum", "logical_and", "logical_or"):
    _register(_name)(lambda o, _n=_name: f"torch.{_n}({o[0]}, {o[1]})")


@_register("prelu")
def _(o):
    return f"F.prelu({o[0]}, {o[1]})"


@_register("where")
def _(o):
    return f"torch.where({o[0]}, {o[1]}, {o[2]})"


for _name in ("softmax", "log_softmax"):
    _register(_name)(lambda o, _n=_name: f"torch.{_n}({o[0]}, dim={o.a('axis')})")


# matrix products ---------------------------------------------------------------

@_register("matmul")
def _(o):
    return f"{o[0]} @ {o[1]}"


@_register("linear")
def _(o):
    return _call("F.linear", *_trim_none(o.args[:3]))


# reductions --------------------------------------------------------------------

def _axes_attr(axis):
    """None, or a tuple of ints (a one-element list/tuple becomes its int)."""
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        axis = tuple(int(a) for a in axis)
        return axis[0] if len(axis) == 1 else axis
    return int(axis)


def _all_dims(o) -> str:
    r = o.rank(0)
    return render(tuple(range(r))) if r is not None else f"tuple(range({o[0]}.dim()))"


def _reduction(fn: str, needs_dim: bool = False, extra=()):
    def lower(o):
        axis, keep = _axes_attr(o.attrs["axis"]), bool(o.attrs["keepdims"])
        kws = o.kw(*extra)
        if axis is None and not keep:
            dim = [f"dim={_all_dims(o)}"] if needs_dim else []
        elif axis is None:
            dim = [f"dim={_all_dims(o)}", "keepdim=True"]
        else:
            dim = [f"dim={render(axis)}"] + (["keepdim=True"] if keep else [])
        return _call(fn, o[0], *dim, *kws)
    return lower


_register("sum")(_reduction("torch.sum"))
_register("mean")(_reduction("torch.mean"))
_register("max")(_reduction("torch.amax"))
_register("min")(_reduction("torch.amin"))
_register("logsumexp")(_reduction("torch.logsumexp", needs_dim=True))
_register("var")(_reduction("torch.var", extra=[("correction", 1)]))
_register("std")(_reduction("torch.std", extra=[("correction", 1)]))


@_register("prod")
def _(o):
    """torch.prod takes one dim: several axes are reduced one after the other."""
    x, axis, keep = o[0], _axes_attr(o.attrs["axis"]), bool(o.attrs["keepdims"])
    if axis is None:
        if not keep:
            return f"torch.prod({x})"
        r = o.rank(0)
        ones = render((1,) * r) if r is not None else f"[1] * {x}.dim()"
        return f"torch.prod({x}).reshape({ones})"
    if isinstance(axis, int):
        return f"torch.prod({x}, dim={axis}" + (", keepdim=True)" if keep else ")")
    r = o.rank(0)
    if r is not None:
        # innermost first, so the remaining axis numbers stay valid
        out = x
        for a in sorted((a % r for a in axis), reverse=True):
            out += f".prod({a}" + (", keepdim=True)" if keep else ")")
        return out
    out = x + "".join(f".prod({a}, keepdim=True)" for a in axis)
    return out if keep else f"{out}.squeeze({render(axis)})"


for _name in ("argmax", "argmin"):
    def _arg(o, _n=_name):
        axis, keep = _axes_attr(o.attrs["axis"]), bool(o.attrs["keepdims"])
        if isinstance(axis, tuple):
            raise TypeError(f"{_n} takes a single axis, got {axis!r}")
        parts = [] if axis is None else [f"dim={axis}"]
        return _call(f"torch.{_n}", o[0], *parts, "keepdim=True" if keep else "")
    _register(_name)(_arg)


# shape ops ---------------------------------------------------------------------

def _shape_args(o, shape) -> str:
    """A shape as call arguments: ``6, -1``; ``()`` for a 0-d shape."""
    if not isinstance(shape, (list, tuple)):
        return o.r(shape)
    if len(shape) == 0:
        return "()"
    return ", ".join(o.r(d) for d in shape)


@_register("reshape")
def _(o):
    return f"{o[0]}.reshape({_shape_args(o, o.attrs['shape'])})"


@_register("expand")
def _(o):
    return f"{o[0]}.expand({_shape_args(o, o.attrs['shape'])})"


@_register("transpose")
def _(o):
    axes = o.attrs["axes"]
    if axes is None:
        r = o.rank(0)
        if r is None:
            return f"{o[0]}.permute(*reversed(range({o[0]}.dim())))"
        axes = tuple(reversed(range(r)))
    axes = tuple(axes)
    if not axes:
        return f"{o[0]}.permute(())"
    return f"{o[0]}.permute({', '.join(o.r(a) for a in axes)})"


@_register("concat")
def _(o):
    return f"torch.cat([{', '.join(o.args)}], dim={o.a('axis')})"


@_register("split", multi=True)
def _(o):
    sec, axis = o.attrs["sections"], o.a("axis")
    if isinstance(sec, (list, tuple)):
        return f"torch.split({o[0]}, {o.r(list(sec))}, dim={axis})"
    return f"torch.chunk({o[0]}, {o.r(sec)}, dim={axis})"


def _slice_part(b, e, s) -> str:
    parts = ["" if b is None else repr(int(b)), "" if e is None else repr(int(e))]
    text = ":".join(parts)
    if s != 1:
        text += f":{s}"
    return text


@_register("strided_slice")
def _(o):
    """x[b0:e0:s0, ...] with Python semantics; torch has no negative steps, so an
    axis walked backwards is flipped first and sliced forwards with -b-1 : -e-1."""
    lists = [o.attrs[k] for k in ("begin", "end", "strides")]
    n = max((len(v) for v in lists if v is not None), default=0)
    begin, end, strides = ([None] * n if v is None else list(v) for v in lists)
    flips, parts = [], []
    for ax, (b, e, s) in enumerate(zip(begin, end, strides)):
        s = 1 if s is None else int(s)
        if s < 0:
            flips.append(ax)
            b = None if b is None else -int(b) - 1
            e = None if e is None else -int(e) - 1
            s = -s
        parts.append(_slice_part(b, e, s))
    while parts and parts[-1] == ":":
        parts.pop()
    src = o[0]
    if flips:
        src += f".flip({', '.join(str(a) for a in flips)})"
    if parts:
        src += "[" + ", ".join(parts) + "]"
    return src


@_register("pad")
def _(o):
    pad = tuple(int(p) for p in o.attrs["pad"])
    mode = o.attrs["mode"]
    if mode == "constant":
        return _call("F.pad", o[0], o.r(pad), *o.kw(("value", 0.0)))
    r, k = o.rank(0), len(pad) // 2
    if r is not None and r in (k + 1, k + 2):
        return f"F.pad({o[0]}, {o.r(pad)}, mode={o.r(mode)})"
    return f"_pad({o[0]}, {o.r(pad)}, {o.r(mode)})"


@_register("gather")
def _(o):
    return f"torch.gather({o[0]}, {o.a('axis')}, {o[1]})"


@_register("scatter_add")
def _(o):
    return f"{o[0]}.scatter_add({o.a('axis')}, {o[1]}, {o[2]})"


@_register("index_select")
def _(o):
    return f"torch.index_select({o[0]}, {o.a('axis')}, {o[1]})"


for _name in ("tril", "triu"):
    _register(_name)(lambda o, _n=_name: _call(f"torch.{_n}", o[0], *o.kw(("k", 0, "diagonal"))))


@_register("one_hot")
def _(o):
    n = o.attrs["num_classes"]
    hot = _call("F.one_hot", o.long(0), "" if (isinstance(n, int) and n < 0) else o.r(n))
    dt = o.attrs["dtype"]
    return hot if torch_dtype(dt) == "torch.int64" else f"{hot}.to({torch_dtype(dt)})"


# operand-free constants ------------------------------------------------------------

def _sized(o, shape) -> str:
    """A size for torch.zeros/ones/randn/empty: ``N, 64`` or ``()``."""
    if not isinstance(shape, (list, tuple)):
        shape = (shape,)
    return _shape_args(o, tuple(shape))


@_register("full")
def _(o):
    shape, value, dt = o.attrs["shape"], o.attrs["value"], torch_dtype(o.attrs["dtype"])
    tail = f"dtype={dt}, device=device"
    if not isinstance(value, bool) and isinstance(value, numbers.Real) and value in (0, 1) \
            and not (isinstance(value, float) and math.copysign(1.0, value) < 0):
        fn = "torch.zeros" if value == 0 else "torch.ones"
        return f"{fn}({_sized(o, shape)}, {tail})"
    if not isinstance(shape, (list, tuple)):
        shape = (shape,)
    return f"torch.full({o.r(tuple(shape))}, {o.r(value)}, {tail})"


@_register("arange")
def _(o):
    start, stop, step = o.attrs["start"], o.attrs["stop"], o.attrs["step"]
    tail = f"dtype={torch_dtype(o.attrs['dtype'])}, device=device"
    if _is_default(start, 0) and _is_default(step, 1) and not isinstance(start, float):
        return f"torch.arange({o.r(stop)}, {tail})"
    return f"torch.arange({o.r(start)}, {o.r(stop)}, {o.r(step)}, {tail})"


@_register("sinusoidal_positions")
def _(o):
    return (f"_sinusoidal_positions({o.a('length')}, {o.a('dim')}, "
            f"{torch_dtype(o.attrs['dtype'])}, device)")


@_register("randn")
def _(o):
    return (f"torch.randn({_sized(o, o.attrs['shape'])}, generator=_generator(seed, {o.a('seed')}, device), "
            f"dtype={torch_dtype(o.attrs['dtype'])}, device=device)")


@_register("uniform")
def _(o):
    return (f"torch.empty({_sized(o, o.attrs['shape'])}, dtype={torch_dtype(o.attrs['dtype'])}, device=device)"
            f".uniform_({o.a('low')}, {o.a('high')}, generator=_generator(seed, {o.a('seed')}, device))")


# convolution and pooling -------------------------------------------------------

for _name in ("conv1d", "conv2d"):
    _register(_name)(lambda o, _n=_name: _call(
        f"F.{_n}", *_trim_none(o.args[:3]),
        *o.kw(("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1))))


@_register("conv_transpose2d")
def _(o):
    return _call("F.conv_transpose2d", *_trim_none(o.args[:3]),
                 *o.kw(("stride", 1), ("padding", 0), ("output_padding", 0), ("groups", 1),
                       ("dilation", 1)))


def _pool_kw(o, kind: str) -> list[str]:
    a = o.attrs
    out = []
    if a.get("stride") is not None and a["stride"] != a["kernel_size"] \
            and not (isinstance(a["stride"], (list, tuple)) and len(a["stride"]) == 0):
        out.append(f"stride={o.a('stride')}")
    out += o.kw(("padding", 0))
    if kind == "max":
        out += o.kw(("dilation", 1))
    out += o.kw(("ceil_mode", False))
    if kind == "avg":
        out += o.kw(("count_include_pad", True), ("divisor_override", None))
    return out


for _name in ("max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d"):
    _register(_name)(lambda o, _n=_name: _call(f"F.{_n}", o[0], o.a("kernel_size"),
                                               *_pool_kw(o, _n[:3])))


@_register("max_pool2d_indices")
def _(o):
    return _call("F.max_pool2d", o[0], o.a("kernel_size"), *_pool_kw(o, "max"), "return_indices=True") + "[1]"


for _name in ("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d"):
    _register(_name)(lambda o, _n=_name: f"F.{_n}({o[0]}, {o.a('output_size')})")


@_register("adaptive_max_pool2d_indices")
def _(o):
    return f"F.adaptive_max_pool2d({o[0]}, {o.a('output_size')}, return_indices=True)[1]"


# normalisation -------------------------------------------------------------------

@_register("batch_norm")
def _(o):
    """(y, new_running_mean, new_running_var); the inputs are never modified: in
    training the running statistics are cloned and F.batch_norm updates the clones."""
    x, rm, rv, w, b = (o[i] for i in range(5))
    y, m, v = o.outs
    rest = _trim_none([w, b])
    eps = o.kw(("eps", 1e-5))
    if not o.attrs["training"]:
        call = _call("F.batch_norm", x, rm, rv, *rest, *eps)
        return _Lines(f"{y}, {m}, {v} = {call}, {rm}, {rv}")
    if rm is None and rv is None:
        call = _call("_batch_norm", x, "None", "None", *rest, "training=True", *o.kw(("momentum", 0.1)), *eps)
        return _Lines(f"{y}, {m}, {v} = {call}, None, None")
    mean = "None" if rm is None else f"{rm}.clone()"
    var = "None" if rv is None else f"{rv}.clone()"
    call = _call("_batch_norm", x, m, v, *rest, "training=True", *o.kw(("momentum", 0.1)), *eps)
    return _Lines(f"{m}, {v} = {mean}, {var}\n{y} = {call}")


@_register("layer_norm")
def _(o):
    ns = o.attrs["normalized_shape"]
    ns = tuple(ns) if isinstance(ns, (list, tuple)) else (ns,)
    return _call("_layer_norm", o[0], o.r(ns), *_trim_none([o[1], o[2]]), *o.kw(("eps", 1e-5)))


@_register("group_norm")
def _(o):
    return _call("_group_norm", o[0], o.a("num_groups"), *_trim_none([o[1], o[2]]), *o.kw(("eps", 1e-5)))


@_register("local_response_norm")
def _(o):
    return _call("F.local_response_norm", o[0], o.a("size"),
                 *o.kw(("alpha", 1e-4), ("beta", 0.75), ("k", 1.0)))


@_register("dropout")
def _(o):
    """Seeded like the NumPy backend (run seed, op seed), so the backward pass's
    dropout of the cotangent drops the same elements as the forward."""
    p, x = o.attrs["p"], o[0]
    if not o.attrs["training"] or p == 0:
        return x
    if p == 1:
        return f"{x} * 0.0"
    return f"_dropout({x}, {o.r(p)}, _generator(seed, {o.a('seed')}, {x}.device))"


@_register("embedding")
def _(o):
    return _call("F.embedding", o[0], o[1], *o.kw(("padding_idx", None)))


@_register("scatter_add_rows")
def _(o):
    idx, upd = o[0], o[1]
    return (f"{upd}.new_zeros({o.a('num_rows')}, {upd}.shape[-1])"
            f".index_add(0, {idx}.reshape(-1), {upd}.reshape(-1, {upd}.shape[-1]))")


@_register("scaled_dot_product_attention")
def _(o):
    mask = f"attn_mask={o[3]}" if o[3] is not None else ""
    return _call("F.scaled_dot_product_attention", o[0], o[1], o[2], mask,
                 *o.kw(("is_causal", False), ("scale", None)))


# recurrent -----------------------------------------------------------------------

_RNN_KW = [("num_layers", 1), ("bias", True), ("bidirectional", False), ("batch_first", False)]


@_register("rnn", multi=True)
def _(o):
    return _call("_rnn", o[0], o[1] or "None", "[" + ", ".join(o.args[2:]) + "]",
                 *o.kw(("nonlinearity", "tanh")), *o.kw(*_RNN_KW))


@_register("gru", multi=True)
def _(o):
    return _call("_gru", o[0], o[1] or "None", "[" + ", ".join(o.args[2:]) + "]", *o.kw(*_RNN_KW))


@_register("lstm", multi=True)
def _(o):
    """proj_size needs no argument: torch.lstm sees it in h0's width."""
    return _call("_lstm", o[0], o[1] or "None", o[2] or "None", "[" + ", ".join(o.args[3:]) + "]",
                 *o.kw(*_RNN_KW))


# losses ------------------------------------------------------------------------------

_RED = ("reduction", "mean")
for _name in ("mse_loss", "l1_loss"):
    _register(_name)(lambda o, _n=_name: _call(f"F.{_n}", o[0], o[1], *o.kw(_RED)))


@_register("smooth_l1_loss")
def _(o):
    return _call("F.smooth_l1_loss", o[0], o[1], *o.kw(_RED, ("beta", 1.0)))


@_register("binary_cross_entropy")
def _(o):
    return _call("F.binary_cross_entropy", *_trim_none(o.args[:3]), *o.kw(_RED))


@_register("binary_cross_entropy_with_logits")
def _(o):
    return _call("F.binary_cross_entropy_with_logits", *_trim_none(o.args[:3]),
                 f"pos_weight={o[3]}" if o[3] is not None else "", *o.kw(_RED))


@_register("kl_div")
def _(o):
    # reduction="mean" averages over every element; torch warns that this is
    # not the true KL divergence, so it is spelled out
    lt = o.kw(("log_target", False))
    if o.attrs["reduction"] == "mean":
        return _call("F.kl_div", o[0], o[1], 'reduction="none"', *lt) + ".mean()"
    return _call("F.kl_div", o[0], o[1], *o.kw(_RED), *lt)


def _target(o) -> str:
    """Class-index targets as int64 (torch rejects int32), probabilities as they are."""
    t = o.type(1)
    if t is None:
        return f"({o[1]} if {o[1]}.is_floating_point() else {o[1]}.long())"
    if t.dtype.is_int and t.dtype != DType.i64:
        return f"{o[1]}.long()"
    return o[1]


@_register("cross_entropy")
def _(o):
    return _call("F.cross_entropy", o[0], _target(o), *_trim_none(o.args[2:3]),
                 *o.kw(("ignore_index", -100), _RED, ("label_smoothing", 0.0)))


@_register("nll_loss")
def _(o):
    return _call("F.nll_loss", o[0], _target(o), *_trim_none(o.args[2:3]),
                 *o.kw(("ignore_index", -100), _RED))


# control -------------------------------------------------------------------------------

def _lower_scan(args, attrs, out_names, *, dims=None, in_types=None) -> str:
    """scan owns a body graph, so `funcgen` lowers it (to a Python for loop over
    the scanned axis, the body inlined, per-step outputs stacked with torch.stack)."""
    raise ValueError("scan is lowered by dlc.backends.torch.funcgen.generate_function: it needs its body graph")


LOWERING["scan"] = _lower_scan
