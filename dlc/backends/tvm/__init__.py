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

# dlc.Model.run(backend="tvm") and `dlc run --backend tvm` compile through
# cache.compile_cached; dlc.runtime.load runs packages.
