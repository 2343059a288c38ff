"""Relax IRModule -> scheduled module -> VM executable.

Public API: `build(mod, target, *, database=None)` (what `tvm.compile`
returns, run with `relax.VirtualMachine`), `optimize(mod, target, *,
database=None)` (everything before code generation, to inspect the scheduled
TIR), `prepare(mod, target)` (the module MetaSchedule should tune),
`run_transform_params(vm, weights)` and `as_target(target)`.

For every target, `Int8Kernels` (int8_pass.py) first gives the int8 ops
qconv2d / qdense the target's packed kernels (vpdpbusd, sdot, dp4a).

For ``llvm`` targets:

1. convolutions go to NHWC/HWIO (conv1d to NWC/WIO) with `ConvertLayout`,
   unless dlc's layout pass already put every one there (`needs_convert_layout`);
   pooling and elementwise ops follow, and the transposes between
   consecutive convolutions cancel; conv2d_transpose stays NCHW/IOHW (TOPI
   legalizes no other layout of it, so ConvertLayout must transpose around
   it rather than hand it its input's NHWC);
2. `PackWeights` (schedules/packing.py) packs wide conv2d / matmul weights
   into contiguous column panels, `FoldConstant`, then `LiftTransformParams`:
   computations on the weights alone (layout transposes, packing, batch-norm
   scale and shift, linear's weight transpose) move into
   ``main_transform_params``;
3. `LegalizeOps`, `AnnotateTIROpPattern`, `FuseOps`, `FuseTIR` (epilogues such
   as bias + relu join the conv/matmul kernel);
4. if a MetaSchedule `database` is given, its records are applied to the
   kernels they match (tune the kernels of `prepare`'s module);
5. every other kernel gets a default schedule from
   `backends/tvm/schedules/cpu.py` (dlight rules, no tuning);
6. the cpu_generic dataflow-lowering and finalization passes, then
   `tvm.compile`.

For ``cuda`` (and other GPU) targets the stock dlight GPU rules schedule the
kernels (as `tvm.relax.backend.cuda` does), after the same
`LiftTransformParams`.

Runtime contract: when the executable has ``main_transform_params``, call it
once with the list of weight tensors in ``main``'s declared order (the
parameters after the first ``num_input``) and pass its result after the
inputs: ``params = vm["main_transform_params"](weights)`` then
``vm["main"](*inputs, *params)``.  Without it (nothing to lift, e.g.
``num_input`` == all parameters), ``main`` takes the weights directly;
`run_transform_params` does either.
"""
from __future__ import annotations

from typing import Any

import tvm
from tvm import relax

__all__ = [
    "TRANSFORM_PARAMS",
    "as_target",
    "build",
    "optimize",
    "prepare",
    "run_transform_params",
]

TRANSFORM_PARAMS = "main_transform_params"

CONV_LAYOUTS = {"relax.nn.conv2d": ["NHWC", "HWIO"], "relax.nn.conv1d": ["NWC", "WIO"],
                "relax.nn.conv2d_transpose": ["NCHW", "IOHW"]}


def as_target(target: Any) -> tvm.target.Target:
    """A `Target` from a Target, a dict or a kind name ("llvm" means this host)."""
    if isinstance(target, tvm.target.Target):
        return target
    if isinstance(target, str) and target == "llvm":
        import os
        import platform

        from tvm.target.codegen import llvm_get_system_cpu
        arch = platform.machine()
        triple = {"x86_64": "x86_64-linux-gnu", "AMD64": "x86_64-linux-gnu",
                  "aarch64": "aarch64-linux-gnu", "arm64": "aarch64-linux-gnu"}.get(arch)
        spec = {"kind": "llvm", "mcpu": llvm_get_system_cpu(),
                "num-cores": int(os.environ.get("TVM_NUM_THREADS") or os.cpu_count() or 1)}
        if triple:
            spec["mtriple"] = triple
        return tvm.target.Target(spec)
    return tvm.target.Target(target)


def _is_cpu(target: tvm.target.Target) -> bool:
    return target.kind.name in ("llvm", "c")


def needs_convert_layout(mod: tvm.IRModule) -> bool:
    """Whether a convolution of `mod` is not yet in the layout `CONV_LAYOUTS`
    asks for.  dlc's layout pass (compiler/passes/layout.py) already emits
    NHWC/HWIO conv2d; then ConvertLayout is not run, and the layout dlc chose
    (with its transposes only at the graph's boundary) is the one compiled."""
    from tvm.relax.expr_functor import PyExprVisitor, visitor

    found = []

    @visitor
    class _Convs(PyExprVisitor):
        def visit_call_(self, call):
            name = getattr(call.op, "name", "")
            want = CONV_LAYOUTS.get(name)
            if want is not None and (str(call.attrs.data_layout), str(call.attrs.kernel_layout)) != tuple(want):
                found.append(name)
            for a in call.args:
                self.visit_expr(a)

    for _gv, f in mod.functions_items():
        if isinstance(f, relax.Function):
            _Convs().visit_expr(f)
    return bool(found)


def _front_passes(target: tvm.target.Target, mod: tvm.IRModule | None = None) -> list:
    from .int8_pass import Int8Kernels
    passes = [Int8Kernels(target)]   # qconv2d / qdense: the target's int8 kernels (int8_pass.py)
    if _is_cpu(target):
        if mod is None or needs_convert_layout(mod):
            passes.append(relax.transform.ConvertLayout(CONV_LAYOUTS))
            passes.append(relax.transform.Normalize())
        from .schedules.packing import PackWeights
        passes.append(PackWeights(target))
    passes += [
        relax.transform.FoldConstant(),
        relax.transform.LiftTransformParams(),
        relax.transform.DeadCodeElimination(),
    ]
    return passes


def _legalize_fuse_passes() -> list:
    from .nan_legalize import legalize_map
    return [
        # NaN-propagating max/min/relu/argmax/max pooling (TOPI's drop NaN)
        relax.transform.LegalizeOps(legalize_map()),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(),
    ]


def _structural_equal(a, b) -> bool:
    try:
        import tvm_ffi
        return bool(tvm_ffi.structural_equal(a, b))
    except (ImportError, AttributeError):  # older tvm
        return bool(tvm.ir.structural_equal(a, b))


def _apply_database(mod: tvm.IRModule, target: tvm.target.Target, database) -> tvm.IRModule:
    """Apply tuning records; mark the kernels they changed as scheduled."""
    before = {gv.name_hint: f for gv, f in mod.functions_items()
              if isinstance(f, tvm.tirx.PrimFunc)}
    with target, database:
        mod = relax.transform.MetaScheduleApplyDatabase()(mod)
    updates = {}
    for gv, f in mod.functions_items():
        if not isinstance(f, tvm.tirx.PrimFunc):
            continue
        old = before.get(gv.name_hint)
        changed = old is not None and not _structural_equal(old, f)
        if changed and (f.attrs is None or "tirx.is_scheduled" not in f.attrs):
            updates[gv] = f.with_attr("tirx.is_scheduled", True)
    for gv, f in updates.items():
        mod[gv] = f
    return mod


def _schedule_passes(target: tvm.target.Target) -> list:
    from tvm.s_tir import dlight as dl
    if _is_cpu(target):
        from .schedules.cpu import cpu_rules
        return [dl.ApplyDefaultSchedule(*cpu_rules())]
    # each stock rule wrapped so that one that raises on a kernel it does not
    # handle (dlight's Matmul on a multi-block epilogue such as silu) passes
    # the kernel to the next rule instead of failing the build
    from .schedules.cpu import _Safe
    return [dl.ApplyDefaultSchedule(*[_Safe(r) for r in (
        dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
        dl.gpu.GeneralReduction(), dl.gpu.Fallback())])]


@tvm.transform.module_pass(opt_level=0, name="DlcMarkNoAlias")
def _mark_noalias(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Give every PrimFunc (VMShapeLower's ``shape_func`` has none) the
    ``tirx.noalias`` attribute.

    Measured with TVM 0.27 / LLVM 22: when one function of the module lacks
    it, LLVM keeps the register-tile accumulators of the *other* kernels in
    memory (a store per FMA), and kernels of models with a symbolic batch ran
    2.5x slower.  A shape function only reads and writes its one shape heap.
    """
    updates = {}
    for gv, f in mod.functions_items():
        if isinstance(f, tvm.tirx.PrimFunc) and (f.attrs is None or "tirx.noalias" not in f.attrs):
            updates[gv] = f.with_attr("tirx.noalias", True)
    for gv, f in updates.items():
        mod[gv] = f
    return mod


def _lowering_passes(target: tvm.target.Target) -> list:
    """Dataflow lowering and finalization (what tvm.compile's relax pipeline runs)."""
    if target.kind.name == "cuda":
        from tvm.relax.backend.cuda import pipeline as p
    elif _is_cpu(target):
        from tvm.relax.backend.cpu_generic import pipeline as p
    else:
        from tvm.relax.backend.gpu_generic import pipeline as p
    passes = list(p.dataflow_lower_passes(target)) + list(p.finalize_passes(target))
    if _is_cpu(target):
        passes.append(_mark_noalias)
    return passes


def prepare(mod: tvm.IRModule, target: Any) -> tvm.IRModule:
    """Steps 1-3: layout conversion, weight packing and lifting, legalization
    and fusion.  The kernels are unscheduled TIR PrimFuncs, exactly the ones
    `optimize` schedules: give this module to MetaSchedule
    (`relax_integration.extract_tasks` / `tune_relax`) so that its records
    match when the database is passed to `build`."""
    target = as_target(target)
    with target:
        mod = tvm.transform.Sequential(_front_passes(target, mod))(mod)
        if _is_cpu(target):
            dispatch = []
        else:
            dispatch = [relax.backend.DispatchSampling(), relax.backend.DispatchSortScan()]
        mod = tvm.transform.Sequential(dispatch + _legalize_fuse_passes())(mod)
    return mod


def optimize(mod: tvm.IRModule, target: Any, *, database=None) -> tvm.IRModule:
    """Layout conversion, weight lifting, legalization, fusion and schedules.

    Returns the module right before code generation: Relax functions still
    in dataflow form, every kernel a scheduled TIR PrimFunc.
    """
    target = as_target(target)
    mod = prepare(mod, target)
    with target:
        if database is not None:
            mod = _apply_database(mod, target, database)
        mod = tvm.transform.Sequential(_schedule_passes(target))(mod)
    return mod


def build(mod: tvm.IRModule, target: Any, *, database=None):
    """Compile a Relax module (one ``main`` with a ``num_input`` attribute) to
    the executable `tvm.compile` returns; run it with `relax.VirtualMachine`."""
    target = as_target(target)
    opt = optimize(mod, target, database=database)
    lowering = tvm.transform.Sequential(_lowering_passes(target))

    @tvm.transform.module_pass(opt_level=0, name="DlcLowering")
    def _relax_pipeline(m: tvm.IRModule, _ctx) -> tvm.IRModule:
        with target:
            return lowering(m)

    return tvm.compile(opt, target, relax_pipeline=_relax_pipeline)


def run_transform_params(vm: relax.VirtualMachine, weights: list) -> list | None:
    """``main``'s weight arguments: the result of ``main_transform_params`` when
    the executable has one, else `weights` unchanged."""
    try:
        f = vm[TRANSFORM_PARAMS]
    except Exception:  # noqa: BLE001 - TVM raises many types
        return list(weights)
    out = f(list(weights))
    return list(out)
