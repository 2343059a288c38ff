"""Importing TVM's runtime without torch: tvm_ffi imports torch when it is
installed (for DLPack interop), which costs seconds and is not needed to run
a package."""
from __future__ import annotations

import os
import sys

from ..errors import DlcError


class _BlockTorch:
    """A meta-path finder that makes `import torch` fail (while TVM imports)."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("dlc: torch is not imported with TVM's runtime")
        return None


def import_tvm():
    """`import tvm` (and relax), keeping tvm_ffi from importing torch when
    torch is not loaded yet.  Set DLC_TVM_WITH_TORCH=1 to let it."""
    if "tvm" in sys.modules:
        import tvm
        return tvm
    block = None
    if "torch" not in sys.modules and not os.environ.get("DLC_TVM_WITH_TORCH"):
        block = _BlockTorch()
        sys.meta_path.insert(0, block)
    try:
        try:
            import tvm
            from tvm import relax  # noqa: F401 - loads relax with the runtime
        except ImportError as e:
            raise DlcError(f"TVM is not installed ({e})",
                           hint="pip install 'dlc[tvm]' (apache-tvm==0.27.0.post1)") from None
    finally:
        if block is not None:
            sys.meta_path.remove(block)
    return tvm
