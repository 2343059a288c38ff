"""Every op crossed with every backend: lowered, or listed as unsupported with a reason.

* NumPy: a kernel in `KERNELS`, or control flow the interpreter runs itself;
* PyTorch: an entry in `backends/torch/lowering.LOWERING` (or its
  `UNSUPPORTED`, if it ever has one);
* TVM: an entry in `backends/tvm/lowering.LOWERING`, or in `UNSUPPORTED`
  with the reason the TVM backend gives when it refuses a model.

An op that is neither fails the test, and so does a stale entry (a lowering or
an unsupported entry for an op that does not exist, or an op both lowered and
listed as unsupported).
"""
from __future__ import annotations

import importlib

import pytest

from dlc.compiler.ops import OPS

# ops the NumPy interpreter runs itself rather than through a kernel
NUMPY_BUILTIN = {"scan": "Interpreter.run_scan lowers the body graph per step"}


def _numpy():
    from dlc.backends.numpy.kernels import KERNELS
    return set(KERNELS), dict(NUMPY_BUILTIN)


def _torch():
    mod = importlib.import_module("dlc.backends.torch.lowering")
    return set(mod.LOWERING), dict(getattr(mod, "UNSUPPORTED", {}))


def _tvm():
    pytest.importorskip("tvm")
    mod = importlib.import_module("dlc.backends.tvm.lowering")
    return set(mod.LOWERING), dict(mod.UNSUPPORTED)


BACKENDS = {"numpy": _numpy, "torch": _torch, "tvm": _tvm}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_op_is_lowered_or_unsupported_with_a_reason(backend):
    lowered, unsupported = BACKENDS[backend]()
    neither = sorted(set(OPS) - lowered - set(unsupported))
    assert not neither, f"{backend}: ops neither lowered nor listed as unsupported: {', '.join(neither)}"
    both = sorted(lowered & set(unsupported))
    assert not both, f"{backend}: ops both lowered and listed as unsupported: {', '.join(both)}"
    unknown = sorted((lowered | set(unsupported)) - set(OPS))
    assert not unknown, f"{backend}: entries for ops that do not exist: {', '.join(unknown)}"
    vague = sorted(op for op, why in unsupported.items() if not isinstance(why, str) or len(why.strip()) < 10)
    assert not vague, f"{backend}: unsupported ops without a reason: {', '.join(vague)}"


@pytest.mark.parametrize("op", sorted(OPS))
def test_op_row(op):
    """One row of the op x backend table: each backend lowers the op or says why not."""
    for backend, table in BACKENDS.items():
        try:
            lowered, unsupported = table()
        except pytest.skip.Exception:
            continue
        assert op in lowered or op in unsupported, f"{op}: no {backend} lowering and no reason why"

