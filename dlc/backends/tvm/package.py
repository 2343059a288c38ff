"""Compiled packages: one `.dlcpkg` file per model and target.

A package is a zip file holding

    manifest.json          what the deploy runtime needs to call the library
                           (see `write_package`), plus provenance
    weights.safetensors    the weights, by dlc's parameter names
    lib.so                 the compiled library (relax VM executable);
                           lib.tar when a cross target's compiler was missing

It is written to a temporary file beside the destination and renamed into
place, so a crash leaves the old package (or none), never half of one.  Run it
with `dlc.runtime.load(path)` (runtime/package.py), which needs TVM's runtime
only.

Libraries: host targets export with the system C compiler; aarch64 targets
with `tvm.support.cc.cross_compiler("aarch64-linux-gnu-gcc")` (a `.tar` of
object files, which needs no compiler, only when it is missing, and the
manifest says so); CUDA targets export a host `.so` with the CUDA source
embedded, compiled on the GPU machine when loaded (NVRTC or nvcc).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np

from ...errors import DlcError
from ...runtime.atomic import atomic_open
from ...runtime.package import FORMAT_VERSION, MANIFEST, WEIGHTS, read_manifest  # noqa: F401 - re-exported
from ...runtime.pkgfile import scratch_dir, sha256_file
from .target import cross_compiler_for, library_arch, library_device

__all__ = ["write_package", "read_manifest", "export_library", "source_hash", "example_input_specs"]


def source_hash(spec_path, bind: dict | None = None, model_name: str | None = None) -> str:
    """sha256 of the `.dln` text, the bindings and the model's name."""
    h = hashlib.sha256()
    try:
        h.update(Path(spec_path).read_bytes())
    except OSError:
        h.update(str(spec_path).encode())
    h.update(b"\0" + json.dumps({str(k): v for k, v in sorted((bind or {}).items())}).encode())
    h.update(b"\0" + str(model_name or "").encode())
    return h.hexdigest()


def export_library(executable, target_dict: dict, out_dir) -> dict:
    """Export `executable` into `out_dir`; returns the manifest's
    ``library`` entry: file, format (so/tar), arch, device, triple,
    cross compiler, size and sha256."""
    out_dir = Path(out_dir)
    arch = library_arch(target_dict)
    cross = cross_compiler_for(target_dict)
    host = target_dict.get("host") if isinstance(target_dict.get("host"), dict) else target_dict
    info = {"arch": arch, "device": library_device(target_dict),
            "triple": host.get("mtriple") or f"{arch}-linux-gnu", "cross_compiler": None}
    try:
        if cross is None:
            path = out_dir / "lib.so"
            executable.export_library(str(path))
            info["format"] = "so"
        elif shutil.which(cross):
            from tvm.support import cc
            path = out_dir / "lib.so"
            executable.export_library(str(path), fcompile=cc.cross_compiler(cross))
            info["format"] = "so"
            info["cross_compiler"] = cross
        else:
            path = out_dir / "lib.tar"
            executable.export_library(str(path))
            info["format"] = "tar"
            info["note"] = (f"{cross} was not found: the library is a tar of object files; link it on the "
                            f"device (or install the cross compiler and recompile)")
    except DlcError:
        raise
    except Exception as e:  # noqa: BLE001 - the compiler's failure, in one line
        msg = str(e).strip().splitlines()
        raise DlcError(f"exporting the library failed: {msg[-1] if msg else type(e).__name__}",
                       hint="run with DLC_DEBUG=1 for the compiler's full message") from e
    info["file"] = path.name
    info["size"] = path.stat().st_size
    info["sha256"] = sha256_file(path)
    return info


def example_input_specs(example_graph) -> list[dict]:
    """How `dlc.Model.random_inputs` draws each input at the example sizes,
    so that the deploy runtime can draw the same ones without the frontend."""
    from ...compiler.analysis import index_bound
    from .relaxgen import storage_dtype
    out = []
    for v in example_graph.inputs:
        dt = v.type.dtype
        shape = [int(d) for d in v.type.shape]
        if dt.is_float:
            out.append({"name": v.name, "kind": "float", "dtype": storage_dtype(dt), "shape": shape})
        elif dt.is_int:
            out.append({"name": v.name, "kind": "int", "dtype": dt.numpy_name, "shape": shape,
                        "high": int(index_bound(example_graph, v))})
        else:
            out.append({"name": v.name, "kind": "bool", "dtype": "bool", "shape": shape})
    return out



def _tvm_version() -> str:
    from .target import _tvm_version as v
    return v()


def write_package(path, compiled, weights: dict, *, source_hash: str, spec_path, model_name: str,
                  target_name: str | None = None, example_inputs: list | None = None,
                  example_dims: dict | None = None, extra: dict | None = None) -> dict:
    """Write `compiled` (a `CompiledModel`, or a `CachedModel` from
    `compile_cached`) and `weights` as one `.dlcpkg` file; returns the
    manifest."""
    from ..._version import __version__
    path = Path(path)
    sig = compiled.signature
    missing = [p["name"] for p in sig["params"] if p["name"] not in weights]
    if missing:
        raise DlcError(f"the weights have no entry for '{missing[0]}'"
                       + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    work = scratch_dir("build")     # named after this process: removed by the next load if it is killed
    try:
        lib_path = getattr(compiled, "lib_path", None)
        if lib_path is not None:
            lib_info = dict(compiled.lib_info)
        else:
            lib_info = export_library(compiled.executable, compiled.target, work)
            lib_path = work / lib_info["file"]
        from ...runtime.weights import save_weights
        wpath = work / WEIGHTS
        save_weights(wpath, {p["name"]: np.asarray(weights[p["name"]]) for p in sig["params"]})
        manifest = {
            "format": "dlcpkg",
            "format_version": FORMAT_VERSION,
            "dlc_version": __version__,
            "tvm_version": _tvm_version(),
            "model": model_name,
            "spec": str(spec_path),
            "source_hash": source_hash,
            "target_name": target_name,
            "target": compiled.target,
            "library": lib_info,
            "weights": WEIGHTS,
            "signature": sig,
            "example_dims": dict(example_dims or {}),
            "example_inputs": list(example_inputs or []),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if getattr(compiled, "key", None):
            manifest["cache_key"] = compiled.key
        if extra:
            manifest.update(extra)
        _write_zip_atomic(path, manifest, wpath, lib_path, lib_info["file"])
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_zip_atomic(path: Path, manifest: dict, weights_path: Path, lib_path: Path, lib_name: str) -> None:
    with atomic_open(path) as f:
        with zipfile.ZipFile(f, "w") as z:
            z.writestr(MANIFEST, json.dumps(manifest, indent=1), compress_type=zipfile.ZIP_DEFLATED)
            z.write(weights_path, WEIGHTS, compress_type=zipfile.ZIP_STORED)
            z.write(lib_path, lib_name, compress_type=zipfile.ZIP_DEFLATED)
