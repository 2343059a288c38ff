"""Importing this package registers every op in `OPS`."""
from .registry import OPS, OpDef, in_group  # noqa: F401
from . import elementwise, activation, linalg  # noqa: F401
from . import reduce, shape, shape_vjp, conv, pool, pool_vjp, norm, attention, recurrent, loss, random  # noqa: F401
from . import control, fused, quant, resample  # noqa: F401,E402
from .layout import LAYOUT_OPS, enable_layout  # noqa: E402

enable_layout(*LAYOUT_OPS)     # after every family: wraps their NCHW shape and VJP rules
