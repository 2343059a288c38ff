"""Reading an ONNX file safely: bounded sizes, parse errors as `DlcError`, and
external tensor data that may only come from files inside the model's folder.

Nothing in a model file is executed: the protobuf is parsed, tensors are read
as raw bytes into NumPy arrays of a known dtype, and that is all.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import DlcError, DlcLimitError, DlcValueError

# A protobuf cannot exceed 2 GiB; larger models keep their weights in external data files.
MAX_MODEL_BYTES = 2 << 30
# One tensor may hold at most this many elements (16 Gi elements: far beyond any real model,
# small enough that a forged dimension cannot make us allocate the impossible).
MAX_TENSOR_ELEMENTS = 1 << 34
MAX_DIM = 1 << 40

# ONNX TensorProto.DataType -> NumPy dtype (the element types dlc's IR has, plus the
# integer widths constant folding can read and narrow)
ONNX_TO_NUMPY = {
    1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
    9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64,
}
DTYPE_NAMES = {0: "undefined", 1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
               7: "int64", 8: "string", 9: "bool", 10: "float16", 11: "double", 12: "uint32",
               13: "uint64", 14: "complex64", 15: "complex128", 16: "bfloat16"}


def dtype_name(code: int) -> str:
    return DTYPE_NAMES.get(code, f"float8/int4 type {code}")


def read_model(path: str | os.PathLike):
    """Parse `path` into an `onnx.ModelProto` without loading external data."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as e:
        raise DlcError(f"cannot read {path}: {e.strerror or e}") from None
    if not p.is_file():
        raise DlcError(f"{path} is not a file")
    if size > MAX_MODEL_BYTES:
        raise DlcLimitError(f"{path} is {size} bytes; an ONNX protobuf is at most 2 GiB",
                            hint="large models keep their weights in external data files")
    data = p.read_bytes()
    return parse_model(data, str(path))


def parse_model(data: bytes, where: str = "<bytes>"):
    import onnx
    from google.protobuf.message import DecodeError
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError, TypeError) as e:
        raise DlcValueError(f"{where} is not a valid ONNX model: {e}".rstrip(": "),
                            hint="the file is truncated or corrupt, or not an ONNX file") from None
    if not model.HasField("graph"):
        raise DlcValueError(f"{where} is not a valid ONNX model: it has no graph",
                            hint="the file is truncated or corrupt, or not an ONNX file")
    return model


def check_dims(dims, what: str) -> tuple[int, ...]:
    out = tuple(int(d) for d in dims)
    n = 1
    for d in out:
        if d < 0 or d > MAX_DIM:
            raise DlcValueError(f"{what} has an invalid dimension {d} in {list(out)}")
        n *= d
    if n > MAX_TENSOR_ELEMENTS:
        raise DlcLimitError(f"{what} has {n} elements ({list(out)}), more than the limit of {MAX_TENSOR_ELEMENTS}")
    return out


def tensor_to_numpy(t, base_dir: Path | None, what: str) -> np.ndarray:
    """A TensorProto as a NumPy array; external data only from inside `base_dir`."""
    from onnx import numpy_helper
    what = f"{what} '{t.name}'" if t.name else what
    if t.data_type not in ONNX_TO_NUMPY:
        raise DlcValueError(f"{what} has element type {dtype_name(t.data_type)}, which dlc does not support",
                            hint="dlc's tensors are float16/32/64, int8/32/64, uint8 and bool")
    shape = check_dims(t.dims, what)
    dt = np.dtype(ONNX_TO_NUMPY[t.data_type])
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if t.data_location == 1:  # EXTERNAL
        raw = _read_external(t, base_dir, what, n * dt.itemsize)
        return np.frombuffer(raw, dtype=dt.newbyteorder("<")).astype(dt).reshape(shape)
    if t.HasField("raw_data") and len(t.raw_data) != n * dt.itemsize:
        raise DlcValueError(f"{what} holds {len(t.raw_data)} bytes of data, its shape {list(shape)} "
                            f"needs {n * dt.itemsize}", hint="the file is truncated or corrupt")
    try:
        arr = numpy_helper.to_array(t)
    except Exception as e:  # noqa: BLE001  (onnx raises many kinds on inconsistent protos)
        raise DlcValueError(f"{what} cannot be read: {e}", hint="the file is truncated or corrupt") from None
    if arr.size != n:
        raise DlcValueError(f"{what} holds {arr.size} values, its shape {list(shape)} needs {n}",
                            hint="the file is truncated or corrupt")
    return np.asarray(arr, dtype=dt).reshape(shape)


def _read_external(t, base_dir: Path | None, what: str, nbytes: int) -> bytes:
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    if base_dir is None:
        raise DlcValueError(f"{what} keeps its data in an external file ({loc!r}), and the model was not "
                            "read from a file", hint="import the model by its path, next to its data files")
    if not loc or os.path.isabs(loc) or "\x00" in loc:
        raise DlcValueError(f"{what}: external data location {loc!r} must be a relative path inside the "
                            f"model's folder {base_dir}")
    root = base_dir.resolve()
    target = (root / loc).resolve()
    if root != target and root not in target.parents:
        raise DlcValueError(f"{what}: external data location {loc!r} escapes the model's folder {root}; refused",
                            hint="external data files must sit in the model's folder or below it")
    try:
        offset = int(info.get("offset", 0) or 0)
        length = int(info.get("length", nbytes) or nbytes)
    except ValueError:
        raise DlcValueError(f"{what}: external data offset/length are not integers: {info}") from None
    if offset < 0 or length != nbytes:
        raise DlcValueError(f"{what}: external data length {length} (offset {offset}) does not match its "
                            f"shape ({nbytes} bytes)")
    try:
        with open(target, "rb") as f:
            f.seek(offset)
            raw = f.read(nbytes)
    except OSError as e:
        raise DlcValueError(f"{what}: cannot read external data {loc!r}: {e.strerror or e}") from None
    if len(raw) != nbytes:
        raise DlcValueError(f"{what}: external data file {loc!r} is too short ({len(raw)} of {nbytes} bytes "
                            f"from offset {offset})", hint="the data file is truncated")
    return raw
