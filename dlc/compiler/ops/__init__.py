"""Importing this package registers every op in `OPS`."""
from .registry import OPS, OpDef, in_group  # noqa: F401
from . import elementwise, activation, linalg  # noqa: F401
from . import reduce, shape, shape_vjp, conv, pool, norm, attention, recurrent, loss, random  # noqa: F401
from . import control, fused  # noqa: F401,E402
