"""The PyTorch backend: a `.dln` model as a self-contained `nn.Module`.

`generate_module(graph)` writes the Python source (what `dlc compile --target
torch` prints) from a model's graph and its layer table (or from a
`dlc.Model`, through `Model.module_graph()`); `load_module(graph)` executes
it and returns an instance whose `state_dict()` keys are dlc's parameter
names, so dlc weights load with `load_state_dict(strict=True)`.  `TorchBackend.run` is the NumPy-in,
NumPy-out entry point the tests compare with the reference interpreter.

Importing this package does not import torch; its functions do.
"""
from __future__ import annotations

import numpy as np

from .modgen import generate_module, load_module, module_graph_of

_DTYPES = {"float32": "float32", "float64": "float64", "f32": "float32", "f64": "float64"}


class TorchBackend:
    """NumPy-in, NumPy-out helpers over the generated module."""

    name = "torch"

    @staticmethod
    def module(model, weights: dict | None = None, dtype: str | None = None):
        """The generated module, with `weights` (dlc names) loaded strictly."""
        import torch
        dtype = _DTYPES.get(dtype, dtype) if dtype is not None else None
        if weights is None:
            return load_module(model, dtype)
        # built without initialising (the weights replace every tensor), then
        # loaded by dlc's names: strict, no renaming
        with torch.device("meta"):
            mod = load_module(model, dtype)
        state = {}
        for k, v in weights.items():
            a = np.array(v, copy=True)
            if dtype is not None and a.dtype.kind == "f":
                a = a.astype(dtype)
            state[k] = torch.from_numpy(a)
        mod.load_state_dict(state, strict=True, assign=True)
        return mod

    @staticmethod
    def run(model, inputs: dict[str, np.ndarray], weights: dict, mode: str = "eval",
            dtype: str | None = None) -> dict[str, np.ndarray]:
        """Forward pass of `model` on `inputs` with `weights`; outputs by name.

        Runs under `torch.no_grad()` with the module in `mode` ("eval" or
        "train").  `dtype="float64"` converts the module and float inputs.
        """
        import torch
        graph = module_graph_of(model)
        mod = TorchBackend.module(graph, weights, dtype)
        mod.train(mode == "train")
        args = []
        for spec in graph.inputs:
            if spec.name not in inputs:
                from ...errors import DlcValueError
                raise DlcValueError(f"missing input '{spec.name}'", None,
                                    "inputs: " + ", ".join(s.name for s in graph.inputs))
            a = np.asarray(inputs[spec.name])
            if dtype is not None and a.dtype.kind == "f":
                a = a.astype(_DTYPES.get(dtype, dtype))
            args.append(torch.from_numpy(np.array(a, copy=True)))
        with torch.no_grad():
            outs = mod(*args)
        outs = outs if isinstance(outs, tuple) else (outs,)
        return {name: o.detach().cpu().numpy() for name, o in zip(graph.output_names, outs)}


def run(model, inputs, weights, mode="eval", dtype=None):
    return TorchBackend.run(model, inputs, weights, mode, dtype)


__all__ = ["TorchBackend", "generate_module", "load_module", "run"]
