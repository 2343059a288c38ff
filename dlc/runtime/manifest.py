"""Checking a package manifest before anything trusts it.

A `.dlcpkg` is read by code that allocates, extracts and loads what its
manifest says, so every field the runtime uses is checked first: its type,
its range, and the sizes it implies.  A bad field is one `DlcError` naming
the field (``library.file``, ``signature.inputs[0].shape[1]``), never an
exception from deep inside NumPy, zipfile or TVM.

The limits (documented in docs/security.md):

    MAX_EXAMPLE_BYTES   4 GiB   random example inputs drawn for a run
    MAX_LIBRARY_BYTES   2 GiB   the compiled library
    MAX_WEIGHTS_BYTES  16 GiB   the parameters, all together
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import DlcError, DlcLimitError

FORMAT_VERSION = 1
LIBRARY_FILES = {"lib.so": "so", "lib.tar": "tar"}     # the only library members a package may name
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64")
RANDOM_KINDS = {"dropout": ("p", "seed"), "randn": ("seed",), "uniform": ("seed", "low", "high")}
DEVICES = ("cpu", "cuda")

MAX_EXAMPLE_BYTES = 4 << 30
MAX_LIBRARY_BYTES = 2 << 30
MAX_WEIGHTS_BYTES = 16 << 30
MAX_DIM = 1 << 40                 # one dimension; products are checked against the byte limits

_HEX64 = re.compile(r"[0-9a-f]{64}")
REBUILD = "rebuild it: dlc compile model.dln --target cpu"


def damaged(path, what: str) -> DlcError:
    return DlcError(f"{path} is damaged: {what}", hint=REBUILD)


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Checker:
    """Field checks for one manifest; `bad` raises the located error."""

    def __init__(self, path):
        self.path = path

    def bad(self, field: str, problem: str) -> DlcError:
        return damaged(self.path, f"manifest field '{field}' {problem}")

    def dict_(self, v, field: str) -> dict:
        if not isinstance(v, dict):
            raise self.bad(field, "is missing or not an object" if v is None else "is not an object")
        return v

    def list_(self, v, field: str) -> list:
        if not isinstance(v, list):
            raise self.bad(field, "is missing or not a list" if v is None else "is not a list")
        return v

    def name(self, v, field: str) -> str:
        if not isinstance(v, str) or not v or len(v) > 256:
            raise self.bad(field, "is not a name (a string of 1 to 256 characters)")
        return v

    def dtype(self, v, field: str) -> str:
        if v not in DTYPES:
            raise self.bad(field, f"is {_short(v)}, not a dtype ({', '.join(DTYPES)})")
        return v

    def dim(self, v, field: str, symbolic: bool):
        if _is_int(v) and 0 <= v <= MAX_DIM:
            return v
        if symbolic and isinstance(v, str) and 0 < len(v) <= 256:
            return v
        what = "a size from 0 to 2**40" + (" or a dimension name" if symbolic else "")
        raise self.bad(field, f"is {_short(v)}, not {what}")

    def shape(self, v, field: str, symbolic: bool = True) -> list:
        dims = self.list_(v, field)
        if len(dims) > 32:
            raise self.bad(field, f"has {len(dims)} dimensions (at most 32)")
        return [self.dim(d, f"{field}[{i}]", symbolic) for i, d in enumerate(dims)]

    def tensors(self, v, field: str, unique: bool = True) -> list:
        seen = set()
        for i, t in enumerate(self.list_(v, field)):
            f = f"{field}[{i}]"
            self.dict_(t, f)
            n = self.name(t.get("name"), f"{f}.name")
            if unique and n in seen:
                raise self.bad(f"{f}.name", f"repeats the name '{n}'")
            seen.add(n)
            self.dtype(t.get("dtype"), f"{f}.dtype")
            self.shape(t.get("shape"), f"{f}.shape")
        return v


def _short(v) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def nbytes(shape, dtype: str) -> int:
    """Bytes of a tensor, in Python integers (no overflow)."""
    n = np.dtype(dtype).itemsize
    for d in shape:
        n *= int(d)
    return n


def check_manifest(m, path) -> dict:
    """`m` if it is a manifest the runtime can act on; else a `DlcError`
    naming the first bad field."""
    c = _Checker(path)
    if not isinstance(m, dict) or m.get("format") != "dlcpkg":
        raise DlcError(f"{path} is not a dlc package (its manifest has no format 'dlcpkg')",
                       hint="a .dlcpkg is written by: dlc compile model.dln --target cpu")
    v = m.get("format_version")
    if not _is_int(v) or v < 1:
        raise c.bad("format_version", f"is {_short(v)}, not a format number (1 to {FORMAT_VERSION})")
    if v > FORMAT_VERSION:
        raise DlcError(f"{path} has package format {v}; this dlc reads up to {FORMAT_VERSION}",
                       hint="upgrade dlc")
    _check_library(c, m.get("library"))
    if m.get("target") is not None:
        _check_target(c, c.dict_(m["target"], "target"))
    if m.get("target_name") is not None and not isinstance(m["target_name"], str):
        raise c.bad("target_name", "is not a string")
    if m.get("model") is not None and not isinstance(m["model"], str):
        raise c.bad("model", "is not a string")
    _check_signature(c, c.dict_(m.get("signature"), "signature"))
    _check_examples(c, m.get("example_inputs", []), m["signature"])
    return m


def _check_library(c: _Checker, lib) -> None:
    lib = c.dict_(lib, "library")
    f = lib.get("file")
    if not isinstance(f, str) or f not in LIBRARY_FILES:
        raise c.bad("library.file", f"is {_short(f)}: a package's library is lib.so or lib.tar, at the top "
                                    "of the package (no folder, no '..', no absolute path)")
    if lib.get("format") != LIBRARY_FILES[f]:
        raise c.bad("library.format", f"is {_short(lib.get('format'))}, but the library is {f}")
    if not isinstance(lib.get("sha256"), str) or not _HEX64.fullmatch(lib["sha256"]):
        raise c.bad("library.sha256", "is missing or not 64 hexadecimal digits")
    size = lib.get("size")
    if not _is_int(size) or not 0 < size <= MAX_LIBRARY_BYTES:
        raise c.bad("library.size", f"is {_short(size)}, not a size from 1 byte to "
                                    f"{human_bytes(MAX_LIBRARY_BYTES)}")
    if lib.get("device", "cpu") not in DEVICES:
        raise c.bad("library.device", f"is {_short(lib.get('device'))}, not one of {', '.join(DEVICES)}")
    for k in ("arch", "triple"):
        if lib.get(k) is not None and not isinstance(lib[k], str):
            raise c.bad(f"library.{k}", "is not a string")


_TRIPLE = re.compile(r"[a-z0-9_]{1,32}(-[A-Za-z0-9_.]{1,32}){1,4}")
_CPU = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
_FEATURE = re.compile(r"[+-][A-Za-z0-9_.]{1,64}")


def _check_target(c: _Checker, target: dict) -> None:
    """The fields handed to LLVM (which crashes on some strings) when the
    runtime checks the CPU's instruction set."""
    if target.get("kind") is not None and not isinstance(target["kind"], str):
        raise c.bad("target.kind", "is not a string")
    if "mtriple" in target and not (isinstance(target["mtriple"], str) and _TRIPLE.fullmatch(target["mtriple"])):
        raise c.bad("target.mtriple", f"is {_short(target['mtriple'])}, not a target triple (x86_64-linux-gnu)")
    if "mcpu" in target and not (isinstance(target["mcpu"], str) and _CPU.fullmatch(target["mcpu"])):
        raise c.bad("target.mcpu", f"is {_short(target['mcpu'])}, not a CPU name")
    mattr = target.get("mattr", [])
    if not isinstance(mattr, list) or not all(isinstance(a, str) and _FEATURE.fullmatch(a) for a in mattr):
        raise c.bad("target.mattr", "is not a list of CPU features (+avx2, -neon)")


def _check_signature(c: _Checker, sig: dict) -> None:
    c.tensors(sig.get("inputs"), "signature.inputs")
    c.tensors(sig.get("outputs"), "signature.outputs", unique=False)
    params = c.tensors(sig.get("params"), "signature.params")
    total = 0
    for i, p in enumerate(params):
        shape = c.shape(p["shape"], f"signature.params[{i}].shape", symbolic=False)
        total += nbytes(shape, p["dtype"])
    if total > MAX_WEIGHTS_BYTES:
        raise DlcLimitError(f"{c.path}: the parameters need {human_bytes(total)}, more than a package may hold "
                            f"({human_bytes(MAX_WEIGHTS_BYTES)})", hint=REBUILD)
    for i, r in enumerate(c.list_(sig.get("random_inputs", []), "signature.random_inputs")):
        f = f"signature.random_inputs[{i}]"
        c.dict_(r, f)
        if not isinstance(r.get("kind"), str) or r["kind"] not in RANDOM_KINDS:
            raise c.bad(f"{f}.kind", f"is {_short(r.get('kind'))}, not one of {', '.join(RANDOM_KINDS)}")
        c.dtype(r.get("dtype"), f"{f}.dtype")
        c.shape(r.get("shape"), f"{f}.shape")
        attrs = c.dict_(r.get("attrs", {}), f"{f}.attrs")
        for a in RANDOM_KINDS[r["kind"]]:
            if not isinstance(attrs.get(a), (int, float)) or isinstance(attrs.get(a), bool):
                raise c.bad(f"{f}.attrs.{a}", "is missing or not a number")
        if r["kind"] == "dropout" and not 0 <= attrs["p"] < 1:
            raise c.bad(f"{f}.attrs.p", f"is {attrs['p']}, not a probability in [0, 1)")
    fixed = c.dict_(sig.get("fixed_dims", {}), "signature.fixed_dims")
    for k, d in fixed.items():
        c.dim(d, f"signature.fixed_dims.{k}", symbolic=False)
    if not isinstance(sig.get("lifted_params", True), bool):
        raise c.bad("signature.lifted_params", "is not true or false")


def _check_examples(c: _Checker, examples, sig: dict) -> None:
    total = 0
    for i, e in enumerate(c.list_(examples, "example_inputs")):
        f = f"example_inputs[{i}]"
        c.dict_(e, f)
        c.name(e.get("name"), f"{f}.name")
        if e.get("kind") not in ("float", "int", "bool"):
            raise c.bad(f"{f}.kind", f"is {_short(e.get('kind'))}, not float, int or bool")
        c.dtype(e.get("dtype"), f"{f}.dtype")
        shape = c.shape(e.get("shape"), f"{f}.shape", symbolic=False)
        if e["kind"] == "int" and not (_is_int(e.get("high", 2)) and 1 <= e.get("high", 2) <= 1 << 62):
            raise c.bad(f"{f}.high", f"is {_short(e.get('high'))}, not a bound from 1 to 2**62")
        total += nbytes(shape, e["dtype"])
    check_example_bytes(total, c.path)


def check_example_bytes(total: int, path) -> None:
    """Refuse to draw example inputs larger than MAX_EXAMPLE_BYTES."""
    if total > MAX_EXAMPLE_BYTES:
        raise DlcLimitError(f"{path}: the example inputs need {human_bytes(total)} (limit "
                            f"{human_bytes(MAX_EXAMPLE_BYTES)})",
                            hint="give smaller sizes (--bind N=...) or the inputs themselves (--input x=x.npy)")


def check_sha256(expect, what: str) -> str:
    """A normalised expected hash: 64 hexadecimal digits."""
    s = str(expect).strip().lower()
    if not _HEX64.fullmatch(s):
        raise DlcError(f"{what} '{expect}' is not a sha256 (64 hexadecimal digits)",
                       hint="sha256sum model.dlcpkg prints it")
    return s
