"""NumPy kernels, one function per IR op, with PyTorch's semantics."""
from . import elementwise, losses, nn, quant, random, recurrent, reduce, resample, shape

KERNELS: dict = {}
for _m in (elementwise, reduce, shape, losses, random, nn, recurrent, quant, resample):
    KERNELS.update(_m.KERNELS)
