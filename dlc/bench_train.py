"""`dlc bench --train`: one training step (forward, the train section's loss,
backward, the optimizer's update) per call, checked then timed.

The reference is dlc's symbolic training step on the NumPy interpreter at
-O0 in float64 (weights, inputs and optimizer state cast).  One step from the
shared starting weights is compared: the loss (float32 tolerance) and every
updated weight and Adam's first moment (the gradient times 1 - beta1) within
`STEP_TOLERANCE` of their scale (max|ref|).  Adam's first step moves a
weight by about lr * sign(grad): where the reference gradient is within the
moment's tolerance of zero its sign is not determined by the check, and such
a weight may move the other way; those elements are counted, not failed (the
gradient itself is checked through the moment).  Backends run their own training step
(`Backend.train_step`, dlc's symbolic backward); baselines run the reference
module in train mode with the spec's loss and the matching `torch.optim`
optimizer (losses: cross_entropy, mse_loss; optimizers: sgd, adam, adamw).
onnxruntime is an inference runtime here: its train rows are `unavailable`."""
from __future__ import annotations

import numpy as np

from .bench_baselines import BaselineUnavailable, reference_module, torch_compile_unavailable
from .bench_check import compare, tolerance
from .errors import DlcError, DlcValueError

# A wrong forward kernel is caught by the loss (float32 tolerance), a wrong backward by the weights and the
# optimizer's moments.  KINK_SHARE: the elements allowed past the tolerance, where float32 and float64 fall on
# the two sides of a kink (a ReLU at 0, a max-pool near-tie); a wrong kernel moves far more than 0.1% of them.
# Deep nets with batch norm amplify a flipped kink: ResNet-18 at batch 2 puts 0.16% of a layer3 gradient past
# the tolerance in EVERY float32 runtime, torch-eager included.  So the allowance is calibrated per model: the
# same -O0 NumPy step run in float32 (the reference's algorithm, only rounded to float32) measures how many
# elements honest float32 arithmetic moves, and each runtime may move NOISE_FACTOR times that share (never
# less than KINK_SHARE).  A wrong kernel still moves a large share of a tensor (tests/test_bench_cmd_train.py).
STEP_TOLERANCE = 1e-2
KINK_SHARE = 1e-3
NOISE_FACTOR = 3.0
TRAIN_BASELINES = ("torch-eager", "torch-compile")   # the default with --train: onnxruntime does not train
_LOSSES = {"cross_entropy": "cross_entropy", "mse_loss": "mse_loss"}


def train_setup(m, bind_b: dict, seed: int) -> dict:
    """The train section, a batch (inputs and label) and the learning rate."""
    from .frontend.train import train_settings
    tdef = next((t for t in m.module.trains if t.model == m.name), None)
    if tdef is None:
        raise DlcValueError(f"model '{m.name}' has no train section: --train needs its loss and optimizer",
                            None, "add `train Model on data { loss = ...; optimizer = ... }`")
    s = train_settings(m.module, tdef, bind_b)
    inputs = m.random_inputs(seed, bind_b)
    feed = dict(inputs)
    label_t = s.loss.label
    if label_t is not None:
        shape = tuple(int(d) for d in label_t.shape)
        rng = np.random.default_rng(seed + 1)
        if label_t.dtype.is_int:
            classes = int(m._elaborate("eval", bind_b).outputs[0].type.shape[-1])
            feed["label"] = rng.integers(0, classes, shape).astype(label_t.dtype.numpy_name)
        else:
            feed["label"] = rng.standard_normal(shape).astype(label_t.dtype.numpy_name)
    return {"settings": s, "inputs": inputs, "feed": feed, "lr": float(s.optimizer_args.get("lr", 1e-3))}


def dlc_step(m, backend: str, setup: dict, weights: dict, bind_b: dict, seed: int, opt=None, dtype=None):
    """A ready `TrainStep` of `backend` from `weights` (fresh optimizer state)."""
    from .backends import get_backend
    from .backends.protocol import StepPlan
    from .frontend.blocks import elaborate_model
    w = {k: (v.astype(dtype) if dtype and v.dtype.kind == "f" else v) for k, v in weights.items()}
    plan = StepPlan(spec=setup["settings"], model_graph=lambda: elaborate_model(m.module, m.name, "train", bind_b),
                    weights=w, optimizer_state=None, seed=seed, bind=bind_b, opt=opt or m.opt, backend=backend)
    return get_backend(backend).train_step(plan)


def reference_step(m, setup, weights, bind_b, seed) -> tuple[float, dict, float]:
    """Loss and updated weights of one float64 -O0 NumPy step, and the kink
    share allowed (NOISE_FACTOR times the largest
    share of a tensor's elements that the same step in float32 moves past
    STEP_TOLERANCE, at least KINK_SHARE)."""
    loss, new = _numpy_step(m, setup, weights, bind_b, seed, "float64")
    loss32, new32 = _numpy_step(m, setup, weights, bind_b, seed, "float32")
    return loss, new, max(KINK_SHARE, NOISE_FACTOR * _off_share(new32, new))


def _numpy_step(m, setup, weights, bind_b, seed, dtype: str) -> tuple[float, dict]:
    from .compiler.passes import PipelineOptions
    step = dlc_step(m, "numpy", setup, weights, bind_b, seed, opt=PipelineOptions(level=0), dtype=dtype)
    step.opt_state = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in step.opt_state.items()}
    step.scalar_dtype = dtype
    feed = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in setup["feed"].items()}
    loss = step.run(feed, setup["lr"], 1, seed)
    return loss, {k: np.asarray(v) for k, v in {**step.weights, **step.opt_state}.items()}


def _off(k: str, x, ref_w: dict):
    """(relative error, elements past STEP_TOLERANCE, elements whose Adam step
    direction the check does not determine) of updated tensor `k`."""
    r = ref_w[k]
    err = np.abs(np.asarray(x, dtype=np.float64) - r) / max(float(np.abs(r).max()), 1e-30)
    bad = ~(err <= STEP_TOLERANCE)                     # NaN counts as bad
    free = np.zeros_like(bad)
    moment = ref_w.get(f"exp_avg.{k}")
    if moment is not None and not k.startswith("exp_avg"):
        # the moment is checked to STEP_TOLERANCE of its scale: within that of zero its sign is not determined
        free = np.abs(moment) <= STEP_TOLERANCE * max(float(np.abs(moment).max()), 1e-30)
    return err, bad & ~free, bad & free


def _checked(ref_w: dict, new_weights: dict):
    for k, r in ref_w.items():
        if k in new_weights and r.dtype.kind == "f" and r.size:
            yield k, r


def _off_share(new_weights: dict, ref_w: dict) -> float:
    """The largest share of a tensor's elements past the tolerance (direction-free ones aside).  A tensor with
    one such element is left out: one element is always allowed, and in a 256-wide bias it would be 0.4%."""
    counts = ((int(_off(k, new_weights[k], ref_w)[1].sum()), r.size) for k, r in _checked(ref_w, new_weights))
    return max((bad / size for bad, size in counts if bad > 1), default=0.0)


def check_step(loss: float, new_weights: dict, ref: tuple) -> dict:
    """The loss within float32 tolerance; every updated weight, and Adam's
    first moment (the gradient, scaled), within STEP_TOLERANCE of its scale.
    An Adam weight may differ where the reference gradient is within that
    tolerance of zero: the check does not determine its sign, hence the
    step's direction; and up to the kink share of a tensor's elements may
    differ (kinks: ReLU at 0, max-pool near-ties: `reference_step`).
    `undetermined_elements` counts both."""
    ref_loss, ref_w = ref[0], ref[1]
    share = ref[2] if len(ref) > 2 else KINK_SHARE
    chk = compare([np.float32(loss)], [np.float64(ref_loss)])
    if not chk["ok"]:
        return {**chk, "why": f"loss {loss:.6g}, reference {ref_loss:.6g}: {chk['why']}"}
    worst, undetermined = 0.0, 0
    for k, r in _checked(ref_w, new_weights):
        err, bad, free = _off(k, new_weights[k], ref_w)
        undetermined += int(free.sum())
        allowed = max(1, int(share * r.size))
        if int(bad.sum()) > allowed:
            return {"ok": False, "error": float(np.nanmax(np.where(bad, err, 0))), "tolerance": STEP_TOLERANCE,
                    "dtype": "float32", "kink_share": share,
                    "why": f"after one step, '{k}': {int(bad.sum())} of {r.size} elements off by more than "
                           f"{STEP_TOLERANCE:g} of its scale (at most {allowed} allowed)"}
        undetermined += int(bad.sum())
        worst = max(worst, float(np.nanmax(np.where(free | bad, 0, err))))
    return {**chk, "step_tolerance": STEP_TOLERANCE, "loss_tolerance": tolerance("float32"), "kink_share": share,
            "step_error": worst, "undetermined_elements": undetermined}


def backend_step_call(m, b, setup, weights, bind_b, seed):
    """(check result, call) for a dlc backend's training step."""
    step = dlc_step(m, b, setup, weights, bind_b, seed)
    loss = step.run(setup["feed"], setup["lr"], 1, seed)
    counter = {"step": 1}

    def call():
        counter["step"] += 1
        step.run(setup["feed"], setup["lr"], counter["step"], seed)
    return loss, {**step.weights, **getattr(step, "opt_state", {})}, call


def baseline_step_call(name, m, setup, weights, args):
    """(loss, updated weights, call) for a torch baseline's training step."""
    import torch
    if name == "onnxruntime":
        raise BaselineUnavailable("onnxruntime runs inference here: no training step")
    s = setup["settings"]
    ops = [n.op.name for n in s.loss.train.nodes]
    if len(ops) != 1 or ops[0] not in _LOSSES:
        raise BaselineUnavailable(f"the train section's loss ({', '.join(ops)}) has no torch baseline "
                                  f"(supported: {', '.join(_LOSSES)})")
    module = reference_module(m.name, weights).train()
    optimizer = _torch_optimizer(s.optimizer, dict(s.optimizer_args), module.parameters())
    fn = getattr(torch.nn.functional, _LOSSES[ops[0]])
    attrs = s.loss.train.nodes[0].attrs
    kw = {k: attrs[k] for k in ("reduction", "ignore_index", "label_smoothing") if k in attrs}
    targs = [torch.from_numpy(np.ascontiguousarray(a)) for a in args]
    label = torch.from_numpy(setup["feed"]["label"]) if "label" in setup["feed"] else None
    forward = module
    if name == "torch-compile":
        why = torch_compile_unavailable()
        if why:
            raise BaselineUnavailable(why)
        forward = torch.compile(module)

    def call():
        optimizer.zero_grad(set_to_none=True)
        out = forward(*targs)
        loss = fn(out[0] if isinstance(out, tuple) else out, label, **kw)
        loss.backward()
        optimizer.step()
        return float(loss.detach())
    try:
        loss = call()
    except Exception as e:   # inductor failures (compiler errors) surface at the first call
        raise BaselineUnavailable(f"{name} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    new = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    for k, p in module.named_parameters():      # torch.optim's state under dlc's names ("exp_avg.<param>")
        for sname, v in optimizer.state.get(p, {}).items():
            if isinstance(v, torch.Tensor) and v.shape == p.shape:
                new[f"{sname}.{k}"] = v.detach().numpy().copy()
    return loss, new, call


def _torch_optimizer(name: str, args: dict, params):
    import torch
    classes = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if name not in classes:
        raise BaselineUnavailable(f"optimizer '{name}' has no torch baseline (supported: {', '.join(classes)})")
    try:
        return classes[name](params, **args)
    except TypeError as e:
        raise DlcError(f"the {name} arguments {args} do not map onto torch.optim: {e}") from None
