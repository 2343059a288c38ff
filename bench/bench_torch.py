"""PyTorch backend: the modules dlc generates from .dln specs against the
hand-written PyTorch modules of bench/reference/, measured in the same run.

    python bench/bench_torch.py [--repeat 21] [--quick] [--models mlp,resnet18]
                                [--device cpu|cuda] [--out bench/results/torch_backend.json]

For each model (mlp, lenet5, resnet18 at 224x224, transformer_encoder_layer
at T=128) both modules get the same weights (dlc's `init_weights(0)`, with
the 1-D parameters and BatchNorm statistics made random so that every term
shows), and their outputs are compared in eval mode (max |gen - hand| /
max |hand| <= 1e-4), and so are the loss and the gradients of one
training-mode backward pass (torch's generator seeded alike before each, so
that dropout masks agree).  Then three things are timed for both:

    forward, batch 1 and 32        eval mode, torch.no_grad()
    train step, batch 32           train mode, zero_grad, loss (cross-entropy
                                   for the classifiers, MSE for the
                                   transformer), backward, torch.optim.SGD step

Each timing is the median of at least `repeat` calls after warm-up calls.
The generated and the hand-written calls alternate one by one (gen, hand,
hand, gen, ...) so that drift of the machine (frequency, other load) hits
both alike, and the reported ratio is the median of the ratios of the
back-to-back pairs (with its interquartile range in the JSON).  Only
torch runs inside the timed region; NumPy work (weights, the correctness
checks) is done before, followed by a pause, since OpenBLAS worker threads
keep spinning for a moment after NumPy calls and would steal the cores.
Fast calls get more pairs (until a cell has run `--min-cell-seconds`);
expensive cells (a pair over `--cell-seconds` / repeat) get fewer, never
fewer than 3.  `--quick`: 3 pairs after one warm-up pair, no minimum time.

`--versus flat` measures the structured generated module (one class per
.dln block, the default of `dlc compile --target torch`) against the flat
one (`structured=False`: every block inline in one forward) instead of the
hand-written module; the ratio is then structured / flat, the same cells.

The ratio is generated / hand-written; the target is <= 1.05.  The load
average before and after the run goes into the JSON: other processes on a
small machine widen the spread (see ratio_iqr) more than they move the
median ratio.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET = 1.05
CHECK_RTOL = 1e-4
CHECK_BATCH = 2   # BatchNorm in train mode needs more than one value per channel

# name -> (spec, hand-written class in bench/reference/torch_models.py, loss, binds besides N)
MODELS = {
    "mlp": ("specs/mlp.dln", "MLP", "ce", {}),
    "lenet5": ("specs/lenet5.dln", "LeNet5", "ce", {}),
    "resnet18": ("specs/resnet18.dln", "ResNet18", "ce", {"size": 224}),
    "transformer_encoder_layer": ("specs/transformer_encoder_layer.dln", "TransformerEncoderLayer", "mse", {"T": 128}),
    # no hand-written peer: --versus flat only (a stack of encoder block classes)
    "vit_b16_l4": ("specs/vit_b16.dln", None, "ce", {"layers": 4}),
}


# --------------------------------------------------------------------------- modules
def import_modgen():
    """dlc.backends.torch.modgen, or the file itself when the editable install
    does not know the subpackage yet."""
    try:
        return importlib.import_module("dlc.backends.torch.modgen")
    except ImportError as e:
        path = ROOT / "dlc/backends/torch/modgen.py"
        if not path.exists():
            raise ImportError(f"{path} does not exist yet") from e
        spec = importlib.util.spec_from_file_location("dlc.backends.torch.modgen", path,
                                                      submodule_search_locations=None)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        return mod


def lively_weights(weights: dict, seed: int = 0) -> dict:
    """Random 1-D float parameters and BatchNorm statistics instead of zeros and
    ones (dlc bench's own, so that the script and the command check alike)."""
    from dlc.bench_baselines import lively_weights as lively
    return lively(weights, seed)


def load_weights(module, weights: dict, device):
    import torch
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}, strict=True)
    return module.to(device)


def loss_fn(kind: str):
    import torch.nn.functional as F
    return F.cross_entropy if kind == "ce" else F.mse_loss


def make_data(name: str, in_shape: tuple, batch: int, kind: str, device, seed: int = 0):
    """Input and label tensors (built with NumPy, before any timing)."""
    import torch
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((batch,) + in_shape).astype(np.float32)).to(device)
    if kind == "ce":
        y = torch.from_numpy(rng.integers(0, 10 if name != "resnet18" else 1000, batch)).to(device)
    else:
        y = torch.from_numpy(rng.standard_normal((batch,) + in_shape).astype(np.float32)).to(device)
    return x, y


# --------------------------------------------------------------------------- checks
def rel_err(a, b) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / (b.abs().max() + 1e-30))


def check(gen, hand, x, y, kind) -> dict:
    """Same outputs in eval mode; same loss and gradients after one
    training-mode backward pass (BatchNorm then uses batch statistics;
    dropout draws its masks from torch's generator, seeded alike for both,
    so the masks agree when both modules draw them in the same order)."""
    import torch
    gen, hand = gen.eval(), hand.eval()
    with torch.no_grad():
        out_err = rel_err(gen(x), hand(x))
    res = {"eval_output_rel_err": out_err, "eval_ok": out_err <= CHECK_RTOL}
    g2, h2 = copy.deepcopy(gen).train(), copy.deepcopy(hand).train()
    torch.manual_seed(0)
    lg = loss_fn(kind)(g2(x), y)
    torch.manual_seed(0)
    lh = loss_fn(kind)(h2(x), y)
    lg.backward()
    lh.backward()
    hp = dict(h2.named_parameters())
    gerr = max(rel_err(p.grad, hp[k].grad) for k, p in g2.named_parameters())
    res.update(train_loss_rel_err=rel_err(lg, lh), grad_rel_err=gerr,
               train_ok=rel_err(lg, lh) <= CHECK_RTOL and gerr <= 10 * CHECK_RTOL)
    return res


# --------------------------------------------------------------------------- timing
def interleaved(fn_gen, fn_hand, repeat: int, warmup: int, sync, cell_seconds: float,
                min_cell_seconds: float) -> dict:
    """Per-call times of fn_gen and fn_hand, called alternately one call at a
    time (gen, hand, hand, gen, gen, hand, ...: neither is always the one
    that runs first after the other).

    Each back-to-back pair gives one ratio gen/hand, and the reported ratio
    is the median of those: a burst of load from other processes, or drift
    of the clock frequency, hits one pair and leaves the median alone.  At
    least `repeat` pairs, more for fast calls until the cell has run
    `min_cell_seconds`, fewer (not under 3) for slow calls whose `repeat`
    pairs would exceed `cell_seconds`."""
    def timed(fn):
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    for _ in range(warmup):
        timed(fn_gen)
        timed(fn_hand)
    # calibration: the first calls after the warm-up can still be slow
    per_pair = min(timed(fn_gen) + timed(fn_hand) for _ in range(3 if warmup else 1))
    n = max(repeat, int(min_cell_seconds / max(per_pair, 1e-7)))
    if n * per_pair > cell_seconds:
        n = max(3, min(n, int(cell_seconds / per_pair)))
    tg, th = [], []
    for i in range(n):
        if i % 2 == 0:
            tg.append(timed(fn_gen))
            th.append(timed(fn_hand))
        else:
            th.append(timed(fn_hand))
            tg.append(timed(fn_gen))
    mg, mh = statistics.median(tg), statistics.median(th)
    ratio = statistics.median(a / b for a, b in zip(tg, th))
    ratios = [a / b for a, b in zip(tg, th)]
    q = statistics.quantiles(ratios, n=4) if n >= 4 else [min(ratios), ratio, max(ratios)]
    return {"gen_ms": mg * 1e3, "hand_ms": mh * 1e3, "ratio": ratio, "ratio_iqr": [q[0], q[2]],  # min and max when under 4 pairs
            "ratio_of_medians": mg / mh, "pairs": n,
            "gen_min_ms": min(tg) * 1e3, "hand_min_ms": min(th) * 1e3}


def forward_fn(module, x):
    import torch

    def run():
        with torch.no_grad():
            module(x)
    return run


def train_fn(module, x, y, kind):
    import torch
    opt = torch.optim.SGD(module.parameters(), lr=1e-3)
    lf = loss_fn(kind)

    def run():
        opt.zero_grad(set_to_none=True)
        lf(module(x), y).backward()
        opt.step()
    return run


# --------------------------------------------------------------------------- driver
def bench_model(name: str, modgen, args, device, sync) -> dict:
    import dlc
    from bench.reference import torch_models
    spec, cls_name, kind, binds = MODELS[name]
    cls = getattr(torch_models, cls_name) if cls_name else None
    row = {"model": name, "spec": spec, "loss": kind}

    # one generated module per batch size: the generated code may bake the
    # bound N into reshapes (e.g. `x.reshape(32, 400)`)
    gens, source = {}, None
    weights = None
    for b in sorted({CHECK_BATCH, 1, args.batch}):
        model = dlc.load(ROOT / spec, bind={"N": b, **binds})
        if weights is None:
            weights = lively_weights(model.init_weights(seed=0))
            in_shape = tuple(int(d) for d in model._elaborate("eval", {"N": b, **binds}).inputs[0].type.shape[1:])
            source = modgen.generate_module(model)
        gens[b] = model
    row["generated_lines"] = len(source.splitlines())

    def fresh(which, b):
        if which == "gen":
            m = modgen.load_module(gens[b])
        elif args.versus == "flat":
            m = modgen.load_module(gens[b], structured=False)
        else:
            m = cls()
        return load_weights(m, weights, device)

    # correctness, at a small batch
    xc, yc = make_data(name, in_shape, CHECK_BATCH, kind, device, seed=1)
    row["check"] = check(fresh("gen", CHECK_BATCH), fresh("hand", CHECK_BATCH), xc, yc, kind)

    cells = {}
    for b in sorted({1, args.batch}):
        x, _ = make_data(name, in_shape, b, kind, device)
        g, h = fresh("gen", b).eval(), fresh("hand", b).eval()
        time.sleep(0.5)  # let OpenBLAS threads from the NumPy work above go idle
        cells[f"forward_b{b}"] = interleaved(forward_fn(g, x), forward_fn(h, x), args.repeat, args.warmup,
                                             sync, args.cell_seconds, args.min_cell_seconds)
    b = args.batch
    x, y = make_data(name, in_shape, b, kind, device)
    g, h = fresh("gen", b).train(), fresh("hand", b).train()
    time.sleep(0.5)
    cells[f"train_step_b{b}"] = interleaved(train_fn(g, x, y, kind), train_fn(h, x, y, kind), args.repeat,
                                            args.warmup, sync, args.cell_seconds, args.min_cell_seconds)
    row["timings"] = cells
    del g, h
    return row


def cpu_model() -> str:
    """The CPU's model name (what `lscpu | grep 'Model name'` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32, help="large batch for forward and the train step")
    ap.add_argument("--quick", action="store_true", help="3 pairs after 1 warm-up pair")
    ap.add_argument("--cell-seconds", type=float, default=90.0,
                    help="time budget per cell; slow cells get fewer pairs (at least 3)")
    ap.add_argument("--min-cell-seconds", type=float, default=3.0,
                    help="fast calls get more pairs, until a cell has run this long")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--versus", choices=("hand", "flat"), default="hand",
                    help="the peer: the hand-written module, or dlc's flat generated module")
    ap.add_argument("--out", default=None,
                    help="default bench/results/torch_backend.json (torch_structured.json with --versus flat)")
    args = ap.parse_args()
    if args.out is None:
        args.out = str(ROOT / "bench/results" / ("torch_structured.json" if args.versus == "flat"
                                                 else "torch_backend.json"))
    if args.quick:
        args.repeat, args.warmup, args.min_cell_seconds = 3, 1, 0.0
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    if args.versus == "hand":
        names = [n for n in names if MODELS[n][1] is not None]

    import torch
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False   # same numerics as the check's tolerance assumes
        torch.backends.cudnn.allow_tf32 = False
        sync = torch.cuda.synchronize
    else:
        def sync():
            pass
    modgen = import_modgen()

    load_before = os.getloadavg()
    rows = [bench_model(n, modgen, args, device, sync) for n in names]
    load_after = os.getloadavg()

    peer = "flat ms" if args.versus == "flat" else "hand ms"
    print(f"{'model':<27}{'cell':<16}{'gen ms':>10}{peer:>10}{'ratio':>8}{'IQR':>14}{'pairs':>7}  check")
    worst = 0.0
    for r in rows:
        c = r["check"]
        ok = c["eval_ok"] and c["train_ok"]
        ctext = f"{'ok' if ok else 'FAIL'} (out {c['eval_output_rel_err']:.1e}, grad {c['grad_rel_err']:.1e})"
        for i, (cell, t) in enumerate(r["timings"].items()):
            worst = max(worst, t["ratio"])
            flag = " *" if t["ratio"] > TARGET else ""
            print(f"{r['model'] if i == 0 else '':<27}{cell:<16}{t['gen_ms']:>10.2f}{t['hand_ms']:>10.2f}"
                  f"{t['ratio']:>8.3f}{'':>2}{t['ratio_iqr'][0]:>5.2f}-{t['ratio_iqr'][1]:<5.2f}{t['pairs']:>7}  {ctext if i == 0 else ''}{flag}")
    print(f"worst ratio {worst:.3f} (target <= {TARGET}; * marks cells above it); "
          f"torch threads {torch.get_num_threads()}, {cpu_model()}, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")

    result = {"machine": platform.processor() or platform.machine(), "cpu_model": cpu_model(),
              "versus": args.versus, "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after,
              "repeat": args.repeat, "warmup": args.warmup, "batch": args.batch, "target_ratio": TARGET,
              "worst_ratio": worst, "all_checks_ok": all(r["check"]["eval_ok"] and r["check"]["train_ok"] for r in rows),
              "models": rows}
    from dlc.runtime.atomic import atomic_write
    atomic_write(args.out, (json.dumps(result, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
