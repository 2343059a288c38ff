"""The generated nn.Module against the hand-written one, forward in eval mode,
on the zoo models the torch lowering changes: bert_base (the generated module
calls F.scaled_dot_product_attention, the hand-written one is Hugging Face's
eager attention), gpt2_small (the same), resnet18 and mobilenet_v2.

    python bench/bench_torch_zoo.py [--models bert_base,resnet18] [--repeat 21] [--quick]
                                    [--threads T] [--out bench/results/torch_zoo.json]

Both modules get the same weights (dlc's init_weights(0), 1-D parameters and
batch-norm statistics made random) through load_state_dict(strict=True); their
eval outputs are compared (max |gen - hand| / max |hand|) before timing.  The
timing is bench_torch.interleaved: calls alternate one by one and the ratio
(generated / hand-written) is the median of back-to-back pairs, under
torch.no_grad(), in one process.  The CPU model, thread count and load
average go into the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_torch import interleaved, lively_weights, load_weights  # noqa: E402

# name -> (spec, model in the spec, hand-written class, binds)
MODELS = {
    "bert_base": ("specs/bert_base.dln", "BertClassifier", "BertClassifier", {"N": 1, "T": 128}),
    # the same with its attention written out as Hugging Face writes it (scores, softmax, dropout, .V):
    # the generated module gets SDPA from the pattern matcher (modgen_attention), not from dlc's op
    "bert_base_written": ("specs/bert_base.dln", "BertClassifier", "BertClassifier", {"N": 1, "T": 128}),
    "gpt2_small": ("specs/gpt2_small.dln", "GPT2", "GPT2", {"N": 1, "T": 128}),
    "resnet18": ("specs/resnet18.dln", None, "ResNet18", {"N": 1}),
    "mobilenet_v2": ("specs/mobilenet_v2.dln", None, "MobileNetV2", {"N": 1}),
}


_SDPA_LINE = "    a = scaled_dot_product_attention(q, k, v)                 # f32[N, h, T, d/h]\n"
_WRITTEN = ("    s = q @ transpose(k, 2, 3) / sqrt(d / h)\n"
            "    p = softmax(s, axis=-1) |> dropout(0.1)\n"
            "    a = p @ v\n")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_model(name: str, args) -> dict:
    import torch

    import dlc
    from bench.reference import torch_models
    from dlc.backends.torch import generate_module, load_module
    spec, model_name, cls_name, binds = MODELS[name]
    if name.endswith("_written"):
        text = (ROOT / spec).read_text()
        assert _SDPA_LINE in text, f"{spec} changed: update bench_torch_zoo._SDPA_LINE"
        model = dlc.Model(str(ROOT / spec), model_name, bind=binds, text=text.replace(_SDPA_LINE, _WRITTEN))
    else:
        model = dlc.load(ROOT / spec, model_name, bind=binds)
    weights = lively_weights(model.init_weights(seed=0))
    src = generate_module(model)
    gen = load_weights(load_module(model), weights, "cpu").eval()
    hand = load_weights(getattr(torch_models, cls_name)(), weights, "cpu").eval()
    g = model._elaborate("eval", binds)
    feed = model.random_inputs(1, binds)
    x = [torch.from_numpy(np.ascontiguousarray(feed[v.name])) for v in g.inputs]
    with torch.no_grad():
        a, b = gen(*x), hand(*x)
    err = float((a.double() - b.double()).abs().max() / b.double().abs().max())
    time.sleep(0.5)  # OpenBLAS threads from the NumPy work above go idle
    t = interleaved(lambda: _call(gen, x), lambda: _call(hand, x), args.repeat, args.warmup, lambda: None, args.cell_seconds, args.min_cell_seconds)
    return {"model": name, "spec": spec, "binds": binds, "eval_output_rel_err": err,
            "generated_uses_sdpa": "scaled_dot_product_attention(" in src,
            "hand_uses_sdpa": False, "forward_eval": t}


def _call(module, x):
    import torch
    with torch.no_grad():
        module(*x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cell-seconds", type=float, default=90.0)
    ap.add_argument("--min-cell-seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/torch_zoo.json"))
    args = ap.parse_args()
    if args.quick:
        args.repeat, args.warmup, args.min_cell_seconds = 3, 1, 0.0
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    bad = [n for n in names if n not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}; choose from {list(MODELS)}")
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = [bench_model(n, args) for n in names]
    load_after = os.getloadavg()
    print(f"{'model':<14}{'gen ms':>9}{'hand ms':>9}{'ratio':>8}{'IQR':>13}{'pairs':>7}  out err  sdpa(gen)")
    for r in rows:
        t = r["forward_eval"]
        print(f"{r['model']:<14}{t['gen_ms']:>9.2f}{t['hand_ms']:>9.2f}{t['ratio']:>8.3f}"
              f"  {t['ratio_iqr'][0]:.2f}-{t['ratio_iqr'][1]:.2f}{t['pairs']:>7}  {r['eval_output_rel_err']:.1e}"
              f"  {r['generated_uses_sdpa']}")
    print(f"CPU {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    result = {"cpu": cpu_model(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after,
              "repeat": args.repeat, "warmup": args.warmup, "models": rows}
    from dlc.runtime.atomic import atomic_write
    atomic_write(args.out, (json.dumps(result, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
