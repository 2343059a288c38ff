"""dlc's `instancenorm` layer written as nn.InstanceNorm1d/2d/3d.

The module graph is the training graph, where an instance norm is a
`group_norm` with one group per channel (plus, with running statistics,
their update); a tracked instance norm must normalise with its buffers in
eval mode, which only the module knows, so it is always written as one."""
from __future__ import annotations

from .modgen_layers import _concrete_shape, _dtype_kw, _is_param, _kw, _Layer, _simple_call

# the ops that compute a tracked instance norm's new running statistics (frontend/layers_norm.py)
_STATS_OPS = frozenset({"full", "mean", "var", "mul", "add"})


def _momentum(n, others) -> float | None:
    """The momentum: batch_norm's attribute (an eval-mode graph), or the first
    of the two constants m, 1 - m of the running-statistics update."""
    if n.op.name == "batch_norm":
        return n.attrs.get("momentum")
    consts = [m.attrs["value"] for m in others if m.op.name == "full"]
    if len(consts) != 2 or abs(consts[0] + consts[1] - 1.0) > 1e-12:
        return None
    return float(consts[0])


def plan_instancenorm(rec, nodes):
    main = [n for n in nodes if n.op.name in ("group_norm", "batch_norm")]
    if len(main) != 1:
        return None
    n = main[0]
    p = rec.name
    if n.op.name == "group_norm":
        x, w, b = (list(n.inputs) + [None] * 3)[:3]
        rm = rv = None
    else:
        x, rm, rv, w, b = (list(n.inputs) + [None] * 5)[:5]
        if n.attrs.get("training") or n.attrs.get("layout", "NCHW") != "NCHW":
            return None
    c = x.type.shape[1]
    cls = {3: "nn.InstanceNorm1d", 4: "nn.InstanceNorm2d", 5: "nn.InstanceNorm3d"}.get(x.type.rank)
    if cls is None or not isinstance(c, int) or (n.op.name == "group_norm" and n.attrs["num_groups"] != c):
        return None
    affine = w is not None
    if affine and not (_is_param(w, p + ".weight") and _is_param(b, p + ".bias")):
        return None
    track = p + ".running_mean" in rec.params
    if not (affine or track):
        return None     # no state: the functional group_norm is the same in both modes
    want = ({p + ".weight", p + ".bias"} if affine else set()) | (
        {p + s for s in (".running_mean", ".running_var", ".num_batches_tracked")} if track else set())
    if set(rec.params) != want or (rm is not None and not _is_param(rm, p + ".running_mean")):
        return None
    others = [m for m in nodes if m is not n]
    if any(m.op.name not in _STATS_OPS for m in others) or (others and not track):
        return None
    mom = _momentum(n, others) if track and (others or n.op.name == "batch_norm") else 0.1
    if mom is None:
        return None
    kws = (_kw("eps", float(n.attrs.get("eps", 1e-5)), 1e-5) + _kw("momentum", float(mom), 0.1)
           + (", affine=True" if affine else "") + (", track_running_stats=True" if track else ""))
    ctor = f"{cls}({c}{kws}{_dtype_kw(x)})"
    return _Layer(rec, ctor, nodes, _simple_call(n, [x]), [n.outputs[0]])


# the layers whose state updates a module makes itself, in place: their buffers
STATEFUL = {"batchnorm": (".running_mean", ".running_var", ".num_batches_tracked"),
            "instancenorm": (".running_mean", ".running_var")}
