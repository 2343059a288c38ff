"""Reading `.npy` inputs without trusting their header.

`np.load` believes the header: a 100-byte file that claims a (10**6, 10**6)
float64 array makes it allocate the claimed size, and an empty file raises
`EOFError`.  `load_npy` parses the header first and checks that the file
holds exactly the bytes the shape and dtype need."""
from __future__ import annotations

import math
import os

import numpy as np

from ..errors import DlcError


def load_npy(path: str | os.PathLike, what: str = "input") -> np.ndarray:
    """The array in `path`, or a DlcError saying why the file is not one."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise DlcError(f"cannot read {what} from {path}: the file is empty",
                               hint="save the array with numpy.save")
            try:
                version = fmt.read_magic(f)
                read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise ValueError(f"unsupported .npy version {version}")
                shape, fortran, dtype = read_header(f, max_header_size=10_000)
            except (ValueError, EOFError, SyntaxError, OverflowError) as e:
                raise DlcError(f"cannot read {what} from {path}: not a .npy file ({str(e)[:100]})",
                               hint="save the array with numpy.save") from None
            if dtype.hasobject:
                raise DlcError(f"cannot read {what} from {path}: it holds Python objects",
                               hint="save a numeric array")
            need = math.prod(shape) * dtype.itemsize
            have = size - f.tell()
            if have != need:
                raise DlcError(f"cannot read {what} from {path}: the header says {dtype} {tuple(shape)} "
                               f"({need:,} bytes) but the file holds {have:,} bytes of data",
                               hint="the file is truncated or damaged; save it again with numpy.save")
            f.seek(0)
            return np.load(f, allow_pickle=False)
    except OSError as e:
        raise DlcError(f"cannot read {what} from {path}: {e.strerror or e}", hint="check the path") from None
