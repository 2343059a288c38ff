"""dlc's runtime: weights on disk, atomic writes, checkpoints, data sets, and
the deploy runtime for compiled packages.

    import dlc.runtime
    pkg = dlc.runtime.load("model.dlcpkg")      # TVM's runtime only: no parser, no torch
    outs = pkg.run({"x": x})

Importing this package imports nothing heavy; `load` imports TVM's runtime.
"""
from __future__ import annotations


def load(path, device: str = "cpu", expect_sha256: str | None = None):
    """Load a compiled `.dlcpkg` for `device` ("cpu" or "cuda"); see
    `dlc.runtime.package.LoadedPackage`.  Loading runs the package's native
    code: pass `expect_sha256` (of the .dlcpkg file) to load only the package
    you pinned."""
    from .package import load as _load
    return _load(path, device, expect_sha256)


__all__ = ["load"]
