"""Optimizer update graphs against torch.optim: 50 steps, the same gradients.

Both sides start from the same two float64 parameters (of different shapes)
and receive the same 50 random gradients; dlc runs its update graph through
the NumPy interpreter, torch runs `opt.step()` (foreach=False, the
single-tensor code path).  Parameters and optimizer state must follow the
same trajectory.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dlc.backends.numpy.interpreter import Interpreter
from dlc.compiler.optim import (
    DEFAULTS,
    build_update_graph,
    initial_state,
    make_optimizer,
)
from dlc.compiler.schedules import make_schedule
from dlc.compiler.types import DType, TensorType
from dlc.compiler.verify import verify

STEPS = 50
SHAPES = {"fc.weight": (5, 3), "fc.bias": (4,)}
RTOL = 1e-6   # the brief; the observed agreement is ~1e-15
TIGHT = 1e-10

TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
         "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop}

# case -> (optimizer, hyper-parameters); dlc state names equal torch's opt.state keys
CASES = {
    "sgd_plain": ("sgd", {"lr": 0.1}),
    "sgd_momentum": ("sgd", {"lr": 0.05, "momentum": 0.9}),
    "sgd_dampening": ("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
    "sgd_nesterov": ("sgd", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    "sgd_weight_decay": ("sgd", {"lr": 0.05, "weight_decay": 0.01}),
    "sgd_all": ("sgd", {"lr": 0.05, "momentum": 0.7, "nesterov": True, "weight_decay": 0.02}),
    "adam_plain": ("adam", {"lr": 1e-2}),
    "adam_amsgrad": ("adam", {"lr": 1e-2, "amsgrad": True}),
    "adam_weight_decay": ("adam", {"lr": 1e-2, "weight_decay": 0.05}),
    "adam_betas": ("adam", {"lr": 1e-2, "betas": (0.3, 0.9), "eps": 1e-6, "amsgrad": True,
                            "weight_decay": 0.01}),
    "adamw_plain": ("adamw", {"lr": 1e-2}),
    "adamw_amsgrad": ("adamw", {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True}),
    "adagrad_plain": ("adagrad", {"lr": 0.1}),
    "adagrad_decay": ("adagrad", {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.01}),
    "adagrad_init_acc": ("adagrad", {"lr": 0.1, "initial_accumulator_value": 0.5, "eps": 1e-6}),
    "rmsprop_plain": ("rmsprop", {"lr": 1e-2}),
    "rmsprop_momentum": ("rmsprop", {"lr": 1e-2, "momentum": 0.9}),
    "rmsprop_centered": ("rmsprop", {"lr": 1e-2, "centered": True}),
    "rmsprop_weight_decay": ("rmsprop", {"lr": 1e-2, "weight_decay": 0.05, "alpha": 0.9}),
    "rmsprop_all": ("rmsprop", {"lr": 1e-2, "momentum": 0.5, "centered": True, "weight_decay": 0.01}),
}


def _data(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()} for _ in range(STEPS)]
    return params, grads


def run_torch(name, hyper, params, grads, lrs=None):
    ps = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in params.items()}
    opt = TORCH[name](list(ps.values()), foreach=False, **hyper)
    traj = []
    for t, g in enumerate(grads):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[t]
        for k, p in ps.items():
            p.grad = torch.tensor(g[k])
        opt.step()
        traj.append({k: p.detach().numpy().copy() for k, p in ps.items()})
    state = {f"{s}.{k}": v.numpy().copy() for k, p in ps.items()
             for s, v in opt.state[p].items() if s != "step" and isinstance(v, torch.Tensor)}
    return traj, state


def run_dlc(name, hyper, params, grads, lrs=None):
    opt = make_optimizer(name, **hyper)
    dtype = DType.from_numpy(next(iter(params.values())).dtype)
    graph = build_update_graph(opt, {k: TensorType(dtype, v.shape) for k, v in params.items()})
    verify(graph)
    interp = Interpreter(graph)
    np_dt = np.dtype(dtype.numpy_name)
    cur = {k: v.copy() for k, v in params.items()}
    state = initial_state(opt, params)
    traj = []
    for t, g in enumerate(grads):
        lr = opt.lr if lrs is None else lrs[t]
        inputs = {**cur, **state, **{f"grad.{k}": v for k, v in g.items()},
                  "lr": np.array(lr, np_dt), "step": np.array(t + 1, np_dt)}
        outs, _ = interp.run(inputs, {})
        cur = {k: outs[k] for k in params}
        state = {k: outs[k] for k in state}
        traj.append({k: v.copy() for k, v in cur.items()})
    return traj, state


def max_rel_err(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3)))


def compare(ours, theirs, rtol=RTOL, tight=TIGHT):
    worst = 0.0
    for t, (o, th) in enumerate(zip(ours, theirs)):
        for k in th:
            assert o[k].dtype == th[k].dtype
            np.testing.assert_allclose(o[k], th[k], rtol=rtol, atol=rtol * 1e-3,
                                       err_msg=f"step {t + 1}, {k}")
            worst = max(worst, max_rel_err(o[k], th[k]))
    assert worst < tight, f"worst relative error {worst:.3g}"
    return worst


@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch(case):
    name, hyper = CASES[case]
    params, grads = _data()
    ours, our_state = run_dlc(name, hyper, params, grads)
    theirs, their_state = run_torch(name, hyper, params, grads)
    compare(ours, theirs)
    # the optimizer state too: same names as torch's opt.state entries
    assert set(our_state) == set(their_state)
    for k in their_state:
        np.testing.assert_allclose(our_state[k], their_state[k], rtol=RTOL, atol=1e-12, err_msg=k)
    # and the parameters actually moved
    assert not np.allclose(ours[-1]["fc.weight"], params["fc.weight"])


VARYING = ["sgd_momentum", "sgd_nesterov", "adam_amsgrad", "adam_weight_decay", "adamw_amsgrad",
           "adagrad_decay", "rmsprop_all"]


@pytest.mark.parametrize("case", VARYING)
@pytest.mark.parametrize("sched", ["onecycle", "cosine"])
def test_varying_lr_matches_torch(case, sched):
    name, hyper = CASES[case]
    if sched == "onecycle":
        s = make_schedule("onecycle", hyper["lr"], max_lr=hyper["lr"] * 5, total_steps=STEPS)
    else:
        s = make_schedule("cosine", hyper["lr"], T_max=STEPS // 2, eta_min=hyper["lr"] / 100)
    lrs = s.values(STEPS)
    assert len(set(lrs)) > 10
    params, grads = _data(seed=1)
    ours, _ = run_dlc(name, hyper, params, grads, lrs)
    theirs, _ = run_torch(name, hyper, params, grads, lrs)
    compare(ours, theirs)


@pytest.mark.parametrize("case", ["sgd_all", "adam_amsgrad", "adamw_plain", "adagrad_decay", "rmsprop_all"])
def test_float32_stays_float32_and_close(case):
    name, hyper = CASES[case]
    params, grads = _data(seed=2, dtype=np.float32)
    ours, _ = run_dlc(name, hyper, params, grads)
    theirs, _ = run_torch(name, hyper, params, grads)
    # f32 arithmetic on both sides; torch computes scalars in double
    compare(ours, theirs, rtol=1e-4, tight=1e-4)


def test_mixed_dtypes_cast_lr_and_step():
    opt = make_optimizer("adam")
    g = build_update_graph(opt, {"a": TensorType(DType.f64, (2,)), "b": TensorType(DType.f32, (3,))})
    verify(g)
    ins = {v.name: v.type for v in g.inputs}
    assert ins["lr"] == TensorType(DType.f64, ()) and ins["step"] == TensorType(DType.f64, ())
    assert sum(n.op.name == "cast" for n in g.nodes) == 2
    assert g.output_names == ["a", "exp_avg.a", "exp_avg_sq.a", "b", "exp_avg.b", "exp_avg_sq.b"]
    assert [v.type.dtype for v in g.outputs] == [DType.f64] * 3 + [DType.f32] * 3


def test_graph_interface():
    opt = make_optimizer("sgd", momentum=0.9)
    t = TensorType(DType.f32, (4, 2))
    assert opt.state_specs(t) == [("momentum_buffer", t, 0.0)]
    assert make_optimizer("sgd").state_specs(t) == []
    assert make_optimizer("adagrad", initial_accumulator_value=0.1).state_specs(t) == [("sum", t, 0.1)]
    assert [s for s, _, _ in make_optimizer("rmsprop", momentum=0.1, centered=True).state_specs(t)] == \
        ["square_avg", "momentum_buffer", "grad_avg"]
    assert [s for s, _, _ in make_optimizer("adamw", amsgrad=True).state_specs(t)] == \
        ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    g = build_update_graph(opt, {"w": t})
    assert [v.name for v in g.inputs] == ["w", "grad.w", "momentum_buffer.w", "lr", "step"]
    assert g.output_names == ["w", "momentum_buffer.w"]


def test_defaults_are_torchs():
    for name, cls in TORCH.items():
        opt = make_optimizer(name)
        ref = cls([torch.nn.Parameter(torch.zeros(1))]).defaults
        for k, v in opt.hyper.items():
            assert ref[k] == v, (name, k)


def test_table_matches_the_train_section():
    from dlc.frontend.train import OPTIMIZERS
    assert DEFAULTS == OPTIMIZERS


@pytest.mark.parametrize("name,hyper", [
    ("lbfgs", {}),
    ("adam", {"beta1": 0.9}),
    ("sgd", {"maximize": True}),
    ("sgd", {"lr": -1.0}),
    ("sgd", {"nesterov": True}),                      # needs momentum
    ("sgd", {"momentum": 0.9, "dampening": 0.1, "nesterov": True}),
    ("adam", {"betas": (0.9, 1.0)}),
    ("adam", {"betas": 0.9}),
    ("adam", {"amsgrad": 1}),
    ("rmsprop", {"eps": -1e-8}),
    ("adagrad", {"lr_decay": "fast"}),
])
def test_bad_optimizers_raise(name, hyper):
    with pytest.raises(ValueError):
        make_optimizer(name, **hyper)
