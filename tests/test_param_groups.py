"""`param_groups`: per-group lr, weight decay, momentum and betas, with the
schedule applied to each group, as torch.optim param groups behave.  The
reference is an independent PyTorch twin (F.linear, torch.optim, StepLR) from
the same initial weights on the same batches, in float64."""
from __future__ import annotations

import numpy as np
import pytest

import dlc
from dlc.trainer import train

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

SPEC = """
model Tiny(x: f64[B, 64]) -> f64[B, 10] {{
    example B = 2
    h = dense(x, 16, name="body") |> relu
    output = dense(h, 10, name="fc")
    return output
}}

train Tiny on npz {{
    loss         = cross_entropy(output, label)
    optimizer    = {optimizer}
    schedule     = step(step_size=1, gamma=0.5)
    param_groups = [{groups}]
    epochs       = 3
    batch        = 32
    shuffle      = false
}}
"""

CASES = {
    "sgd": ("sgd(lr=0.1, momentum=0.9, weight_decay=1e-3)",
            '{match = "body.*", lr = 0.02, momentum = 0.5}, {match = "fc.weight", lr = 0.2, weight_decay = 0}',
            [{"lr": 0.02, "momentum": 0.5}, {"lr": 0.2, "weight_decay": 0.0}]),
    "adam": ("adam(lr=1e-3, weight_decay=1e-4)",
             '{match = "body.*", lr = 3e-3, betas = (0.8, 0.99)}, {match = "fc.weight", lr = 1e-2, weight_decay = 0}',
             [{"lr": 3e-3, "betas": (0.8, 0.99)}, {"lr": 1e-2, "weight_decay": 0.0}]),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float64)
    p = tmp_path_factory.mktemp("pg") / "d.npz"
    np.savez(p, x_train=x[:200], y_train=y[:200], x_val=x[200:264], y_val=y[200:264])
    return p, x[:200], y[:200]


def torch_twin(init: dict, x, y, opt_name: str, defaults: dict, groups: list[dict]) -> dict:
    """What torch.optim does with these param groups: groups [body.*, fc.weight, the rest]."""
    w = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    pg = [{"params": [w["body.weight"], w["body.bias"]], **groups[0]},
          {"params": [w["fc.weight"]], **groups[1]},
          {"params": [w["fc.bias"]]}]
    opt = getattr(torch.optim, {"sgd": "SGD", "adam": "Adam"}[opt_name])(pg, **defaults, foreach=False)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _epoch in range(3):
        for i in range(0, len(x), 32):
            h = torch.relu(torch.nn.functional.linear(xt[i:i + 32], w["body.weight"], w["body.bias"]))
            out = torch.nn.functional.linear(h, w["fc.weight"], w["fc.bias"])
            loss = torch.nn.functional.cross_entropy(out, yt[i:i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return {k: v.detach().numpy() for k, v in w.items()}


@pytest.mark.parametrize("backend,grad", [("numpy", None), ("torch", "autograd"), ("torch", "symbolic")])
@pytest.mark.parametrize("opt", sorted(CASES))
def test_param_groups_follow_torch_optim(tmp_path, data, opt, backend, grad):
    path, x, y = data
    optimizer, groups_src, groups = CASES[opt]
    p = tmp_path / "m.dln"
    p.write_text(SPEC.format(optimizer=optimizer, groups=groups_src))
    res = train(p, data_path=str(path), backend=backend, grad=grad, progress=False)
    init = dlc.load(p).init_weights(seed=0)
    defaults = {"sgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3},
                "adam": {"lr": 1e-3, "weight_decay": 1e-4}}[opt]
    want = torch_twin(init, x, y, opt, defaults, groups)
    for k, v in want.items():
        np.testing.assert_allclose(res.weights[k], v, rtol=1e-9, atol=1e-12, err_msg=k)
    # the groups matter: without them torch.optim gives other weights
    plain = torch_twin(init, x, y, opt, defaults, [{}, {}])
    for k in ("body.weight", "fc.weight"):
        assert not np.allclose(plain[k], want[k], rtol=1e-3), k
    assert res.history[-1]["lr"] == pytest.approx(defaults["lr"] * 0.5 ** 2)
