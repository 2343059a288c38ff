"""Learning-rate schedules against torch.optim.lr_scheduler: 100 steps each."""
import warnings

import pytest

torch = pytest.importorskip("torch")

from dlc.compiler.schedules import DEFAULTS, make_schedule

N = 100
BASE_LR = 0.1


def torch_lrs(make, base_lr=BASE_LR, n=N, opt_cls=None, **opt_kw):
    """get_last_lr() after 0, 1, ..., n-1 scheduler steps (optimizer stepped first)."""
    p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = (opt_cls or torch.optim.SGD)([p], lr=base_lr, **opt_kw)
    sched = make(opt)
    out = [sched.get_last_lr()[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n - 1):
            opt.step()
            sched.step()
            out.append(sched.get_last_lr()[0])
    return out


def assert_close(ours, theirs, tol=1e-12):
    assert len(ours) == len(theirs)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        assert abs(a - b) <= tol * max(1.0, abs(b)), f"step {t}: dlc {a!r} vs torch {b!r}"


S = torch.optim.lr_scheduler

CASES = {
    "constant": ({}, lambda o: S.LambdaLR(o, lambda e: 1.0)),
    "step": ({"step_size": 7}, lambda o: S.StepLR(o, step_size=7)),
    "step_gamma": ({"step_size": 3, "gamma": 0.7}, lambda o: S.StepLR(o, 3, gamma=0.7)),
    "multistep": ({"milestones": [10, 30, 30, 75]}, lambda o: S.MultiStepLR(o, [10, 30, 30, 75])),
    "multistep_gamma": ({"milestones": (5, 50), "gamma": 0.5},
                        lambda o: S.MultiStepLR(o, [5, 50], gamma=0.5)),
    "exponential": ({"gamma": 0.95}, lambda o: S.ExponentialLR(o, gamma=0.95)),
    "cosine": ({"T_max": 100}, lambda o: S.CosineAnnealingLR(o, T_max=100)),
    # past T_max the cosine goes back up (torch's schedule is periodic)
    "cosine_short_eta_min": ({"T_max": 30, "eta_min": 1e-3},
                             lambda o: S.CosineAnnealingLR(o, T_max=30, eta_min=1e-3)),
    "cosine_restarts": ({"T_0": 10}, lambda o: S.CosineAnnealingWarmRestarts(o, T_0=10)),
    "cosine_restarts_mult2": ({"T_0": 5, "T_mult": 2, "eta_min": 1e-4},
                              lambda o: S.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=1e-4)),
    "onecycle_cos": ({"max_lr": 0.5, "total_steps": 100},
                     lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=100, cycle_momentum=False)),
    "onecycle_linear": ({"max_lr": 0.3, "total_steps": 100, "pct_start": 0.25, "div_factor": 10.0,
                         "final_div_factor": 100.0, "anneal_strategy": "linear"},
                        lambda o: S.OneCycleLR(o, max_lr=0.3, total_steps=100, pct_start=0.25,
                                               div_factor=10.0, final_div_factor=100.0,
                                               anneal_strategy="linear", cycle_momentum=False)),
    "linear_warmup": ({"warmup": 10}, lambda o: S.LinearLR(o, start_factor=1.0 / 3, end_factor=1.0,
                                                          total_iters=10)),
    "linear_warmup_factor": ({"warmup": 25, "start_factor": 0.01},
                             lambda o: S.LinearLR(o, start_factor=0.01, end_factor=1.0, total_iters=25)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_schedule_matches_torch(case):
    args, make = CASES[case]
    name = case if case in DEFAULTS else next(n for n in sorted(DEFAULTS, key=len, reverse=True)
                                               if case.startswith(n))
    ours = make_schedule(name, BASE_LR, **args)
    assert_close(ours.values(N), torch_lrs(make))


def test_onecycle_with_momentum_cycling_has_the_same_lrs():
    # torch cycles the optimizer's momentum by default; the lrs do not depend on it
    ours = make_schedule("onecycle", BASE_LR, max_lr=0.5, total_steps=N)
    theirs = torch_lrs(lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=N), momentum=0.9)
    assert_close(ours.values(N), theirs)


def test_onecycle_last_value_and_past_the_end():
    ours = make_schedule("onecycle", BASE_LR, max_lr=0.5, total_steps=20)
    theirs = torch_lrs(lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=20, cycle_momentum=False), n=21)
    assert_close(ours.values(21), theirs)
    assert ours.lr(19) == pytest.approx(0.5 / 25 / 1e4)
    with pytest.raises(ValueError):
        ours.lr(21)


def test_closed_form_agrees_with_the_recursion():
    import math
    s = make_schedule("cosine", 0.1, T_max=50, eta_min=0.001)
    for t in range(200):
        closed = 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * t / 50)) / 2
        assert abs(s.lr(t) - closed) < 1e-14
    s = make_schedule("step", 0.1, step_size=4, gamma=0.5)
    assert [s.lr(t) for t in (0, 3, 4, 7, 8)] == [0.1, 0.1, 0.05, 0.05, 0.025]


def test_per_step_convention():
    assert make_schedule("onecycle", 0.1, max_lr=1.0, total_steps=10).per_step
    for name, args in [("constant", {}), ("step", {"step_size": 2}), ("cosine", {"T_max": 5}),
                       ("cosine_restarts", {"T_0": 3}), ("linear_warmup", {"warmup": 3}),
                       ("exponential", {"gamma": 0.9}), ("multistep", {"milestones": [2]})]:
        assert not make_schedule(name, 0.1, **args).per_step


def test_defaults_filled_from_the_trainer():
    s = make_schedule("cosine", 0.1, epochs=20)
    assert s.T_max == 20
    s = make_schedule("onecycle", 0.1, max_lr=1.0, epochs=3, steps_per_epoch=7)
    assert s.total_steps == 21


def test_random_access_equals_sequential():
    a = make_schedule("cosine", 0.1, T_max=10)
    b = make_schedule("cosine", 0.1, T_max=10)
    seq = a.values(40)
    assert [b.lr(t) for t in reversed(range(40))][::-1] == seq


@pytest.mark.parametrize("name,args", [
    ("nope", {}),
    ("step", {}),                                  # step_size is required
    ("step", {"step_size": 2, "bogus": 1}),
    ("cosine", {}),                                # T_max without epochs
    ("onecycle", {"max_lr": 1.0}),                 # total_steps without epochs/steps_per_epoch
    ("onecycle", {"max_lr": 1.0, "total_steps": 10, "anneal_strategy": "tan"}),
    ("onecycle", {"max_lr": 1.0, "total_steps": 10, "pct_start": 1.5}),
    ("cosine_restarts", {"T_0": 0}),
    ("cosine_restarts", {"T_0": 5, "T_mult": 0}),
    ("linear_warmup", {"warmup": 5, "start_factor": 0.0}),
    ("multistep", {"milestones": "ten"}),
    ("exponential", {"gamma": "fast"}),
])
def test_bad_schedules_raise(name, args):
    with pytest.raises(ValueError):
        make_schedule(name, 0.1, **args)


def test_negative_step_raises():
    with pytest.raises(ValueError):
        make_schedule("constant", 0.1).lr(-1)


def test_table_matches_the_train_section():
    from dlc.frontend.train import SCHEDULES
    assert DEFAULTS == SCHEDULES
