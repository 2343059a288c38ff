"""Every op crossed with every backend: lowered directly, lowered through its
decomposition, or listed as unsupported with a reason.

* NumPy: a kernel in `KERNELS`, or control flow the interpreter runs itself;
* PyTorch: an entry in `backends/torch/lowering.LOWERING` (or its
  `UNSUPPORTED`, if it ever has one);
* TVM: an entry in `backends/tvm/lowering.LOWERING`, or in `UNSUPPORTED`
  with the reason the TVM backend gives when it refuses a model;
* any backend: the op's decomposition (`OpDef.decompose`), provided every op
  the decomposition uses is itself covered on that backend.

An op that is none of these fails the test, naming the op and the backend,
and so does a stale entry (a lowering or an unsupported entry for an op that
does not exist, or an op both lowered and listed as unsupported).  Beyond the
backends, every op needs a `.dln` builtin (made from the registry unless the
frontend writes one, or a reason in `OpDef.builtin`) and a row in a per-op
test table.
"""
from __future__ import annotations

import importlib

import pytest

from dlc.compiler.ops import OPS
from dlc.compiler.types import DType, TensorType

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


# (operand shape, attributes) of the decomposed ops that are not elementwise
_INTERPOLATE = [((2, 3, 5), {"scale_factor": 2, "mode": m}) for m in ("nearest", "linear", "area")] + \
    [((2, 3, 5, 4), {"size": (7, 3), "mode": m}) for m in ("nearest", "nearest-exact", "bilinear", "bicubic", "area")]
PROBES = {"interpolate": _INTERPOLATE,
          "pixel_shuffle": [((2, 8, 3, 5), {"upscale_factor": 2})],
          "pixel_unshuffle": [((2, 2, 4, 6), {"downscale_factor": 2})]}


def ops_used_by_decomposition(name: str) -> set[str]:
    """The ops `name`'s decomposition emits, for each attribute variant we know
    of, built on a float32 (2, 3) operand (most decomposed ops are elementwise
    on one float tensor; other kinds of op have their operands in PROBES)."""
    from dlc.compiler.builder import Builder
    from dlc.compiler.decompose import decomposition
    from dlc.compiler.ir import Graph
    op = OPS[name]
    variants = PROBES.get(name) or [((2, 3), {})] + [((2, 3), {"approximate": "tanh"})] * (name == "gelu")
    used = set()
    for shape, attrs in variants:
        g = Graph("probe")
        xs = [g.add_input(f"x{i}", TensorType(DType.f32, shape)) for i, _ in enumerate(op.operands)]
        y = Builder(g).op(name, *xs, **attrs)
        used |= {n.op.name for n in decomposition(y.producer).nodes}
    return used


def covered(backend: str, lowered: set, unsupported: dict) -> dict[str, str]:
    """op -> how `backend` runs it ('kernel', 'decomposition' or 'unsupported')."""
    how = {op: "kernel" for op in lowered} | {op: "unsupported" for op in unsupported}
    # a fused region runs its body (a decomposition made of ops this test covers one by one)
    # on every backend that has no lowering of its own for it
    how.setdefault("fused", "decomposition")
    pending = {n for n, op in OPS.items() if op.decompose is not None and n not in how}
    while pending:   # a decomposition counts once every op it uses is covered
        ready = {n for n in pending if ops_used_by_decomposition(n) <= {k for k, v in how.items() if v != "unsupported"}}
        if not ready:
            break
        how.update(dict.fromkeys(ready, "decomposition"))
        pending -= ready
    return how


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_op_is_lowered_or_unsupported_with_a_reason(backend):
    lowered, unsupported = BACKENDS[backend]()
    how = covered(backend, lowered, unsupported)
    neither = sorted(set(OPS) - set(how))
    assert not neither, (f"{backend}: ops with no kernel, no decomposition that {backend} can lower, "
                         f"and no reason why: {', '.join(neither)}")
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
        how = covered(backend, lowered, unsupported)
        assert op in how, f"{op}: no {backend} lowering, no decomposition {backend} can lower, and no reason why"


def test_decomposition_emits_only_other_ops():
    for name, op in OPS.items():
        if op.decompose is not None and name != "fused":   # a region's body is its decomposition
            used = ops_used_by_decomposition(name)
            assert name not in used, f"{name}'s decomposition uses {name} itself"
            assert used <= set(OPS)


def test_every_op_has_a_builtin_or_a_reason():
    from dlc.frontend.builtins import BUILTINS
    from dlc.frontend.builtins_ops import missing_builtins
    missing = missing_builtins(BUILTINS)
    assert not missing, f"ops with no .dln builtin and no reason in OpDef.builtin: {', '.join(missing)}"
    vague = sorted(n for n, op in OPS.items() if op.builtin is not None and len(op.builtin.strip()) < 10)
    assert not vague, f"OpDef.builtin must say why the op has no builtin: {', '.join(vague)}"

