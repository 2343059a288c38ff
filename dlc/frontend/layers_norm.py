"""Instance norm, stochastic depth, and the functional forms of the layers.

A functional form takes its weights as tensors, as `torch.nn.functional`
does (`conv2d(x, W, b, stride=2)`, `batch_norm(x, rm, rv, W, b)`), so a
network written out with `param` declarations names its parameters itself.
It shares its name with the layer; `call_builtin` picks it when the call
passes weights (`builtins.functional_form`).

Everything here composes existing IR ops: instance norm is group norm with
one group per channel (the same normalisation), and stochastic depth is a
dropout mask drawn per sample.
"""
from __future__ import annotations

from ..compiler.ir import Init
from ..compiler.types import DType
from .builtins import builtin, functional_form
from .layers import _in_features


def _opt_tensor(F, v, what: str):
    return None if v is None else F.float_tensor(v, what)


def _running_stats_update(F, stat, new) -> None:
    """Hand a new running statistic back to its buffer in train mode, as
    torch updates `running_mean` in place; a plain tensor is not updated."""
    if stat is None or stat.kind != "buffer" or not F.training:
        return
    if F.frame.graph is not F.frame.ctx.root:
        F.fail(f"{F.fname}: updating the running statistics inside a scan cell is not supported",
               "normalise outside the cell")
    F.frame.ctx.root.state_updates[stat.name] = new


# ----------------------------------------------------------------- instance norm
def _spatial_check(F, x):
    if x.type.rank < 3:
        F.fail(f"{F.fname} expects [N, C, L] or [N, C, H, W] (rank >= 3), got {x.type}")
    known = [d for d in x.type.shape[2:] if isinstance(d, int)]
    if len(known) == x.type.rank - 2 and all(d == 1 for d in known):
        F.fail(f"{F.fname}: instance statistics of {x.type} have one value per channel",
               "as torch: more than 1 spatial element is needed to normalise each instance")


def _instance_norm(F, x, rm, rv, w, b, use_input_stats: bool, momentum: float, eps: float):
    """F.instance_norm: normalise each (sample, channel) over its spatial
    positions; with running statistics, update them from the batch's mean of
    the instance means and unbiased variances (use_input_stats), or normalise
    with them (not use_input_stats)."""
    c = x.type.shape[1]
    for stat, what in ((rm, "running_mean"), (rv, "running_var")):
        if stat is not None and (stat.type.rank != 1 or stat.type.shape[0] != c):
            F.fail(f"{F.fname}: {what} {stat.type} does not match input {x.type}; expected shape [{c}]",
                   f"give {what} one value per channel")
    if not use_input_stats:
        if rm is None or rv is None:
            F.fail(f"{F.fname}: use_input_stats=false needs running_mean and running_var")
        return F.op("batch_norm", x, rm, rv, w, b, training=False, momentum=momentum, eps=eps)[0]
    _spatial_check(F, x)
    y = F.op("group_norm", x, w, b, num_groups=c, eps=eps)
    if (rm is None) != (rv is None):
        F.fail(f"{F.fname}: give both running_mean and running_var, or neither")
    if rm is not None and F.training and rm.kind == "buffer":
        spatial = tuple(range(2, x.type.rank))
        mom, keep = F.scalar(momentum, x), F.scalar(1.0 - momentum, x)
        for stat, per_instance in ((rm, F.op("mean", x, axis=spatial, keepdims=False)),
                                   (rv, F.op("var", x, axis=spatial, keepdims=False, correction=1))):
            batch = F.op("mean", per_instance, axis=0, keepdims=False)
            new = F.op("add", F.op("mul", stat, keep), F.op("mul", batch, mom))
            _running_stats_update(F, stat, new)
    return y


@builtin(kind="layer", aliases=("instance_norm", "instancenorm1d", "instancenorm2d"))
def instancenorm(F, x, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False):
    """Instance normalisation (nn.InstanceNorm1d/2d) over [N, C, ...]."""
    x = F.float_tensor(x)
    if x.type.rank < 3:
        F.fail(f"instancenorm expects [N, C, L] or [N, C, H, W], got {x.type}")
    c = _in_features(F, x, 1, "channel dimension")
    dt = x.type.dtype
    w = b = rm = rv = None
    if F.boolean(affine, "affine"):
        w = F.param("weight", (c,), Init("ones"), dt)
        b = F.param("bias", (c,), Init("zeros"), dt)
    track = F.boolean(track_running_stats, "track_running_stats")
    if track:
        rm = F.param("running_mean", (c,), Init("zeros"), dt, buffer=True)
        rv = F.param("running_var", (c,), Init("ones"), dt, buffer=True)
        # registered as torch's _NormBase does, and as there never counted (F.instance_norm does not)
        F.param("num_batches_tracked", (), Init("zeros"), DType.i64, buffer=True)
    return _instance_norm(F, x, rm, rv, w, b, F.training or not track, F.number(momentum, "momentum"),
                          F.number(eps, "eps"))


# ------------------------------------------------------------- stochastic depth
@builtin(aliases=("stochastic_depth",))
def drop_path(F, x, p, mode="row"):
    """Stochastic depth (torchvision.ops.stochastic_depth): in train mode zero
    whole samples ("row") or the whole batch ("batch") with probability p and
    scale the survivors by 1/(1-p); identity in eval mode."""
    x = F.float_tensor(x)
    p = F.prob(p)
    mode = F.choice(mode, ("row", "batch"), "mode")
    if x.type.rank < 1 and mode == "row":
        F.fail(f"drop_path in row mode needs a batch axis, got {x.type}", 'use mode="batch" for a scalar')
    if not F.training or p == 0.0:
        return x
    # one draw per sample: dropout of ones [N, 1, ...] holds 0 or 1/(1-p) (torchvision's noise, p=1 gives 0)
    r = x.type.rank
    shape = (x.type.shape[0],) + (1,) * (r - 1) if mode == "row" else (1,) * r
    ones = F.op("full", shape=shape, value=1.0, dtype=x.type.dtype.numpy_name)
    return F.op("mul", x, F.op("dropout", ones, p=p, training=True, seed=F.seed()))


# -------------------------------------------------------------- functional forms
def _conv_fn(nd: int):
    def fn(F, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        x, w = F.float_tensor(x), F.float_tensor(weight, "weight")
        if x.type.rank != nd + 2:
            F.fail(f"conv{nd}d expects a rank-{nd + 2} input, got {x.type}")
        pad = F.choice(padding, ("same", "valid"), "padding") if isinstance(padding, str) else \
            F.ints(padding, nd, "padding", minimum=0)
        one = (lambda t: t) if nd > 1 else (lambda t: t[0])
        return F.op(f"conv{nd}d", x, w, _opt_tensor(F, bias, "bias"), stride=one(F.ints(stride, nd, "stride")),
                    padding=pad if isinstance(pad, str) else one(pad), dilation=one(F.ints(dilation, nd, "dilation")),
                    groups=F.int(groups, "groups"))
    fn.__name__ = f"conv{nd}d"
    fn.__doc__ = f"F.conv{nd}d with explicit weights: weight [C_out, C_in/groups, k...], bias [C_out]."
    return fn


functional_form("conv1d")(_conv_fn(1))
functional_form("conv2d")(_conv_fn(2))


@functional_form("conv_transpose2d")
def conv_transpose2d(F, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """F.conv_transpose2d with explicit weights: weight [C_in, C_out/groups, kh, kw]."""
    return F.op("conv_transpose2d", F.float_tensor(x), F.float_tensor(weight, "weight"),
                _opt_tensor(F, bias, "bias"), stride=F.ints(stride, 2, "stride"),
                padding=F.ints(padding, 2, "padding", 0), output_padding=F.ints(output_padding, 2, "output_padding", 0),
                groups=F.int(groups, "groups"), dilation=F.ints(dilation, 2, "dilation"))


@functional_form("batchnorm")
def batch_norm(F, x, running_mean=None, running_var=None, weight=None, bias=None, training=None, momentum=0.1,
               eps=1e-5):
    """F.batch_norm: `training` defaults to the model's mode; in train mode the
    running statistics, when they are `buffer`s, are updated as torch does."""
    x = F.float_tensor(x)
    rm, rv = _opt_tensor(F, running_mean, "running_mean"), _opt_tensor(F, running_var, "running_var")
    training = F.training if training is None else F.boolean(training, "training")
    y, new_mean, new_var = F.op("batch_norm", x, rm, rv, _opt_tensor(F, weight, "weight"),
                                _opt_tensor(F, bias, "bias"), training=training,
                                momentum=F.number(momentum, "momentum"), eps=F.number(eps, "eps"))
    if training and rm is not None and rv is not None:
        _running_stats_update(F, rm, new_mean)
        _running_stats_update(F, rv, new_var)
    return y


@functional_form("layernorm")
def layer_norm(F, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """F.layer_norm over the trailing `normalized_shape` axes."""
    ns = normalized_shape if isinstance(normalized_shape, (list, tuple)) else (normalized_shape,)
    return F.op("layer_norm", F.float_tensor(x), _opt_tensor(F, weight, "weight"), _opt_tensor(F, bias, "bias"),
                normalized_shape=tuple(F.int(d, "normalized_shape") for d in ns), eps=F.number(eps, "eps"))


@functional_form("groupnorm")
def group_norm(F, x, num_groups, weight=None, bias=None, eps=1e-5):
    """F.group_norm: weight and bias [C]."""
    return F.op("group_norm", F.float_tensor(x), _opt_tensor(F, weight, "weight"), _opt_tensor(F, bias, "bias"),
                num_groups=F.int(num_groups, "num_groups"), eps=F.number(eps, "eps"))


@functional_form("instancenorm")
def instance_norm(F, x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """F.instance_norm; running statistics that are `buffer`s are updated in train mode."""
    x = F.float_tensor(x)
    if x.type.rank < 3:
        F.fail(f"instance_norm expects [N, C, ...] of rank >= 3, got {x.type}")
    return _instance_norm(F, x, _opt_tensor(F, running_mean, "running_mean"),
                          _opt_tensor(F, running_var, "running_var"), _opt_tensor(F, weight, "weight"),
                          _opt_tensor(F, bias, "bias"), F.boolean(use_input_stats, "use_input_stats"),
                          F.number(momentum, "momentum"), F.number(eps, "eps"))
