"""The TVM backend: dlc graphs compiled to TVM Relax/TensorIR kernels.

    relaxgen.py      IR -> Relax (symbolic dims, host-drawn random inputs)
    lowering*.py     the per-op lowering table (LOWERING, UNSUPPORTED)
    pipeline.py      layout conversion, parameter lifting, fusion, schedules
    schedules/       default CPU schedule rules (no tuning needed)
    compile.py       compile_graph -> CompiledModel -> Runner (NumPy in/out)
    target.py        target names and presets (cpu, llvm, cuda, aarch64, boards)

Importing this package does not import tvm; its functions do.
"""
from __future__ import annotations


def run(model, inputs, weights, mode: str = "eval", bind: dict | None = None, seed: int = 0,
        target="cpu") -> dict:
    """Forward pass of a `dlc.Model` compiled in process for `target`."""
    from .compile import compile_graph
    g = model._elaborate(mode, bind) if mode != "eval" or bind else model.graph
    compiled = compile_graph(g, target, bind=bind)
    return compiled.runner().set_weights(weights).run(inputs, seed=seed)


__all__ = ["run"]
