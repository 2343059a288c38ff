"""`dlc prune`: magnitude pruning of a trained model's weights.

Unstructured (the default) follows `torch.nn.utils.prune.l1_unstructured`
applied to every conv and dense weight, one layer at a time: in each weight
the round(sparsity * size) entries of smallest magnitude are set to zero
(ties broken by position, first come first pruned).  `scope="global"` ranks
all those weights together instead (torch's `global_unstructured`), so that
the model as a whole reaches the sparsity.  Biases and normalisation
parameters are never pruned.

The result is a safetensors file holding every weight of the model (the
pruned ones with their zeros), so that `dlc run --weights` loads it as any
other weights file, and, in its metadata, the masks:

- `dlc.prune`: JSON {"kind": "unstructured", "sparsity", "scope", "layers":
  {param: {"pruned": k, "size": n}}}
- `dlc.mask.<param>`: the mask of that weight (1 = kept), as NumPy
  `packbits` of the flattened mask, base64-encoded; its shape is the weight's.

Fine-tuning keeps the sparsity: `dlc train --weights pruned.safetensors`
reads the masks (`load_masks`) and the trainer wraps its step in
`masked_step`, which multiplies the masked weights by their masks after
every optimizer step, so that they stay exactly zero (the gradient still
flows to them for one step, as with torch.nn.utils.prune's reparametrised
weight the update is simply discarded).

Channel pruning (`structured="channel"`) is in `dlc.prune_channels`.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

import numpy as np

from .errors import DlcValueError
from .runtime.weights import read_metadata

PRUNE_KEY = "dlc.prune"
MASK_PREFIX = "dlc.mask."
SCOPES = ("layer", "global")


@dataclass
class PruneReport:
    """What was pruned: per weight (pruned, size), and the totals."""

    kind: str
    sparsity: float
    scope: str = "layer"
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def pruned(self) -> int:
        return sum(k for k, _ in self.layers.values())

    @property
    def size(self) -> int:
        return sum(n for _, n in self.layers.values())


def check_sparsity(sparsity: float) -> float:
    s = float(sparsity)
    if not np.isfinite(s) or not 0.0 <= s < 1.0:
        raise DlcValueError(f"sparsity {sparsity!r} is out of range: give a fraction in [0, 1)",
                            None, "e.g. --sparsity 0.5 removes half of each layer's weights")
    return s


def check_weights(g, weights: dict, source: str = "the weights") -> None:
    """Every parameter and buffer of graph `g` is in `weights` with its shape,
    and nothing else is: pruning the wrong model's weights is an error."""
    want = {p.name: p for p in g.params}
    for name, p in want.items():
        if name not in weights:
            raise DlcValueError(f"{source} have no entry for '{name}' of {g.name}", p.param.span,
                                "give the weights this spec was trained with")
        shape = tuple(int(d) for d in p.type.shape)
        if tuple(np.shape(weights[name])) != shape:
            raise DlcValueError(f"{source}: '{name}' has shape {tuple(np.shape(weights[name]))}, "
                                f"{g.name} expects {p.type}", p.param.span,
                                "give the weights this spec was trained with")
    extra = sorted(set(weights) - set(want))
    if extra:
        raise DlcValueError(f"{source} have entries {g.name} does not use: {', '.join(extra[:5])}"
                            + (" ..." if len(extra) > 5 else ""), g.span,
                            "give the weights this spec was trained with")


def _smallest(magnitudes: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest entries of a 1-D array (stable: ties by position)."""
    return np.argsort(magnitudes, kind="stable")[:k]


def magnitude_masks(weights: dict, names: list[str], sparsity: float, scope: str = "layer") -> dict:
    """Boolean masks (True = kept) for the weights `names`: per layer, each
    loses round(sparsity * size) entries, as torch's l1_unstructured counts;
    global, the round(sparsity * total) smallest over all of them."""
    if scope not in SCOPES:
        raise DlcValueError(f"unknown pruning scope {scope!r}", None, f"use one of {', '.join(SCOPES)}")
    masks = {}
    if scope == "layer":
        for n in names:
            w = np.asarray(weights[n])
            keep = np.ones(w.size, dtype=bool)
            keep[_smallest(np.abs(w, dtype=np.float64).ravel(), round(sparsity * w.size))] = False
            masks[n] = keep.reshape(w.shape)
        return masks
    flat = np.concatenate([np.abs(np.asarray(weights[n], dtype=np.float64)).ravel() for n in names])
    keep = np.ones(flat.size, dtype=bool)
    keep[_smallest(flat, round(sparsity * flat.size))] = False
    at = 0
    for n in names:
        shape = np.shape(weights[n])
        size = int(np.prod(shape))
        masks[n] = keep[at:at + size].reshape(shape)
        at += size
    return masks


def prune_unstructured(model, weights: dict, sparsity: float, scope: str = "layer"):
    """(pruned weights, masks, PruneReport) for a `dlc.Model` and its weights."""
    from .compiler.prune import prunable_weights
    sparsity = check_sparsity(sparsity)
    g = model._elaborate("eval")
    check_weights(g, weights)
    names = [w.param for w in prunable_weights(g)]
    if not names:
        raise DlcValueError(f"{g.name} has no conv or dense weights to prune", g.span)
    masks = magnitude_masks(weights, names, sparsity, scope)
    out = dict(weights)
    for n, m in masks.items():
        out[n] = apply_mask(np.asarray(weights[n]), m)
    report = PruneReport("unstructured", sparsity, scope,
                         {n: (int(m.size - m.sum()), int(m.size)) for n, m in masks.items()})
    return out, masks, report


def apply_mask(w: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`w` with the masked entries exactly zero (+0.0, whatever their sign was)."""
    return np.where(mask, w, np.zeros((), dtype=w.dtype)).astype(w.dtype, copy=False)


# the file format ---------------------------------------------------------------------------
def mask_metadata(masks: dict, report: PruneReport) -> dict[str, str]:
    meta = {PRUNE_KEY: json.dumps({"kind": report.kind, "sparsity": report.sparsity, "scope": report.scope,
                                   "layers": {n: {"pruned": k, "size": s} for n, (k, s) in report.layers.items()}})}
    for n, m in masks.items():
        meta[MASK_PREFIX + n] = base64.b64encode(np.packbits(m.ravel())).decode("ascii")
    return meta


def save_pruned(path, weights: dict, masks: dict, report: PruneReport) -> None:
    from .runtime.weights import save_weights
    save_weights(path, weights, mask_metadata(masks, report))


def load_masks(path, weights: dict | None = None) -> dict[str, np.ndarray]:
    """The masks recorded in a pruned weights file ({} for a file without
    any); each shaped like its weight (read from `weights`, else the file)."""
    meta = read_metadata(path)
    if not any(k.startswith(MASK_PREFIX) for k in meta):
        return {}
    if weights is None:
        from .runtime.weights import load_weights
        weights = load_weights(path)
    masks = {}
    for k, text in meta.items():
        if not k.startswith(MASK_PREFIX):
            continue
        name = k[len(MASK_PREFIX):]
        if name not in weights:
            raise DlcValueError(f"{path}: a mask for '{name}', which the file has no weight for")
        shape = np.shape(weights[name])
        bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))
        size = int(np.prod(shape))
        if bits.size < size or bits.size > size + 7:
            raise DlcValueError(f"{path}: the mask of '{name}' does not match its shape {shape}")
        masks[name] = bits[:size].astype(bool).reshape(shape)
    return masks


# fine-tuning -----------------------------------------------------------------------------------
def apply_masks(weights, masks: dict) -> None:
    """Zero the masked entries of `weights` in place, after an optimizer step.

    `weights` maps names to NumPy arrays (replaced by masked copies) or torch
    tensors (filled in place, outside autograd): a training step's own
    weight store, whichever backend runs it."""
    for name, m in masks.items():
        if name not in weights:
            raise DlcValueError(f"the pruning mask of '{name}' has no weight to apply to",
                                hint="fine-tune the spec the weights were pruned for")
        w = weights[name]
        if isinstance(w, np.ndarray):
            weights[name] = apply_mask(w, m)
        else:                                   # a torch parameter: fill, not multiply (-w * 0 is -0.0)
            import torch
            with torch.no_grad():
                w.masked_fill_(torch.from_numpy(~m), 0.0)


class MaskedStep:
    """A training step (backends.protocol.TrainStep) that re-applies the
    pruning masks after every update; otherwise the wrapped step."""

    def __init__(self, step, masks: dict):
        self.step, self.masks = step, masks
        apply_masks(self._store(), masks)

    def _store(self):
        # GraphTrainStep keeps NumPy weights by name; torch's AutogradStep its nn.Parameters
        store = getattr(self.step, "params", None)
        return store if store is not None else self.step.weights

    def run(self, feed: dict, lr: float, step: int, seed: int) -> float:
        loss = self.step.run(feed, lr, step, seed)
        apply_masks(self._store(), self.masks)
        return loss

    def __getattr__(self, name):
        return getattr(self.step, name)


def masks_for_job(job: dict, settings=None) -> dict:
    """The masks of the weights file a training run starts from (--weights,
    or `weights =` in the train section `settings`), or {}.  A resumed run
    without either takes the file its first run recorded in transfer.json."""
    from pathlib import Path

    from .train_transfer import weights_path
    path = weights_path(job, settings) if settings is not None else job.get("weights")
    if not path and job.get("resume") and job.get("out"):
        record = Path(job["out"]) / "transfer.json"
        if record.exists():
            path = json.loads(record.read_text()).get("weights")
            if path and not Path(path).exists():
                raise DlcValueError(f"the run in {job['out']} started from {path}, which is gone: its pruning "
                                    "masks cannot be re-applied", None, "give the pruned weights with --weights")
    return load_masks(path) if path else {}


def masked_step(step, masks: dict | None):
    """The trainer's hook: `step` as is without masks, else a `MaskedStep`."""
    return MaskedStep(step, masks) if masks else step


# the command ---------------------------------------------------------------------------------
def prune_file(spec: str, weights_path: str, sparsity: float, out: str, *, structured: str | None = None,
               scope: str = "layer", layers=None, model: str | None = None, bind: dict | None = None,
               round_to: int = 1) -> list[str]:
    """`dlc prune`: prune `spec`'s weights from `weights_path`, write the
    result to `out`, and return the lines of the summary to print.

    Unstructured: `out` is the pruned `.safetensors` (masks in its metadata).
    `structured="channel"`: `out` is the new `.dln` spec, its weights go
    beside it with the suffix `.safetensors`; `round_to` rounds each
    pruned conv's width to a multiple of it."""
    from pathlib import Path

    from .api import load
    from .runtime.weights import load_weights
    sparsity = check_sparsity(sparsity)
    m = load(spec, model, bind)
    weights = load_weights(weights_path)
    if structured is None:
        if layers:
            raise DlcValueError("--layers selects convolutions for --structured channel", None,
                                "drop --layers (unstructured pruning prunes every conv and dense weight)")
        pruned, masks, report = prune_unstructured(m, weights, sparsity, scope)
        save_pruned(out, pruned, masks, report)
        lines = [f"{n}: {k:,} of {s:,} weights pruned ({k / s:.1%})" for n, (k, s) in report.layers.items()]
        return lines + [f"{m.name} -> {out}: {report.pruned:,} of {report.size:,} conv/dense weights zeroed "
                        f"({report.pruned / report.size:.1%}, {report.scope} scope); masks in the metadata"]
    if structured != "channel":
        raise DlcValueError(f"unknown structured pruning {structured!r}", None, "use --structured channel")
    from .prune_channels import check_pruned, prune_channels
    from .prune_spec import write_spec
    from .runtime.weights import save_weights
    out_p = Path(out)
    if out_p.suffix != ".dln":
        raise DlcValueError(f"-o {out}: channel pruning writes a spec; give a .dln path",
                            None, "e.g. -o pruned.dln (its weights go to pruned.safetensors)")
    texts, pruned, _, report = prune_channels(m, weights, sparsity, layers, round_to)
    written = write_spec(spec, texts, out_p)
    w_path = out_p.with_suffix(".safetensors")
    check_pruned(out_p, pruned, report, m.name)
    save_weights(w_path, pruned, {PRUNE_KEY: json.dumps({"kind": "channel", "sparsity": sparsity, "round_to": round_to, "layers": {
        n: {"channels": c, "kept": k} for n, (c, k) in report.layers.items()}})})
    lines = [f"{n}: {c} -> {k} channels" for n, (c, k) in report.layers.items()]
    odd = sorted({k for _, k in report.layers.values() if k % 16})
    if odd:     # measured in docs/pruning.md: resnet18 at 45/90/180/359 channels is 4.9x slower on TVM cpu
        lines.append(f"note: kept widths {', '.join(map(str, odd[:4]))} are not multiples of 16; TVM's CPU "
                     "kernels vectorise 16 channels at a time, so they may run slower than the dense model "
                     "(add --round-to 16)")
    lines += [f"{n}: kept ({why})" for n, why in report.skipped.items()]
    return lines + [f"{m.name} -> {', '.join(str(p) for p in written)}, {w_path}: parameters "
                    f"{report.params_before:,} -> {report.params_after:,} "
                    f"({report.params_after / report.params_before:.1%})"]
