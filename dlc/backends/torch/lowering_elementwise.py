"""Torch lowerings of the elementwise ops (unary, binary, activations, casts,
softmax) and the matrix products."""
from __future__ import annotations

from ...compiler.ops import OPS
from .lowering import _call, _register, _trim_none, torch_dtype


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
