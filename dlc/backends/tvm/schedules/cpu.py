"""Default (untuned) CPU schedules for the TVM backend, as dlight rules.

Rules, tried in order on every PrimFunc that FuseTIR produced:

- `TiledContraction`: one multiply-accumulate reduction block (matmul, dense,
  batched matmul, NHWC/HWIO conv2d, grouped and depthwise conv2d) plus an
  elementwise epilogue (bias, batch-norm scale/shift, relu, clip, residual
  add).  The output is register-tiled: R rows (the spatial axis just before
  the column axis: matmul's i, conv's w) by C contiguous columns (matmul's j,
  conv's output channel), the reduction loops inside the tile, the rows
  unrolled and the columns vectorized; the accumulator is a local buffer and
  the epilogue is computed from it right after the tile.  The outer loops are
  fused and parallel.
- `InnerSpatialReduction` (pooling in NHWC, reductions over non-innermost
  axes: the reduction loops move outside the innermost spatial axis, which is
  vectorized), then dlight's CPU `Reduction` (softmax, log-softmax, layer
  norm: blocks sharing leading spatial axes, reducing the innermost one) and
  `RowReduction` (any other reduction: parallel rows).
- `Injective`: elementwise, broadcast, transposes, padding, reshape: fused
  parallel outer loops, vectorized innermost axis.
- `Fallback`: parallelize the outermost spatial loop of every block.

Every rule is wrapped so that an exception while scheduling makes it decline
(returns None) and the next rule is tried; a function no rule takes stays
unscheduled (correct, just slow).  Extents may be symbolic (a batch `N`):
splits of symbolic loops use a `None` outer factor and a guard.

The shared helpers live in `cpu_common`, `TiledContraction` in
`cpu_contraction`; every name stays importable from here.
"""
from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.base import ScheduleRule

from .cpu_common import (  # noqa: F401 - re-exported
    PARALLEL_MIN_ELEMS,
    PARALLEL_MIN_MACS,
    _CPURule,
    _Safe,
    _int,
    _is_local_var,
    _largest_divisor,
    _loop_extent,
    _numel,
    _schedule_injective_block,
    _uses_var,
    _vectorize_tail,
    col_tile,
    log,
    row_tile,
    vector_lanes,
)
from .cpu_contraction import TiledContraction, _mac_operands  # noqa: F401 - re-exported


# --------------------------------------------------------------------------
# injective
# --------------------------------------------------------------------------

class Injective(_CPURule):
    def apply(self, func, target, _tunable):
        normalized = self._normalized(func, target)
        if normalized is None:
            return None
        sch, infos = normalized
        if not infos:
            return None
        if not all(b.is_injective() for b in infos):
            return None
        if any(sch.get(b.block_rv).init is not None for b in infos):
            # a reduction of extent 1 (x[m, 1] @ w[1, n]) reads as injective; inlining
            # its epilogue then adds a fused bias in the init and again in the update
            # (found by `dlc verify` on a random graph): leave it to Fallback
            return None
        infos = dl.base.try_inline_contiguous_spatial(sch, infos)
        lanes = vector_lanes(target)
        for info in infos:
            _schedule_injective_block(sch, info.block_rv, lanes)
        return sch


# --------------------------------------------------------------------------
# reductions
# --------------------------------------------------------------------------

class InnerSpatialReduction(_CPURule):
    """Reductions whose innermost spatial axis is contiguous in every buffer
    (NHWC pooling, mean over H and W, sums over leading axes): the reduction
    loops move above that axis, which is vectorized."""

    def apply(self, func, target, _tunable):  # pylint: disable=too-many-locals
        normalized = self._normalized(func, target)
        if normalized is None:
            return None
        sch, infos = normalized
        infos = dl.base.try_inline_contiguous_spatial(sch, infos)
        lanes = vector_lanes(target)
        reds = [b for b in infos if not b.is_injective()]
        if not reds:
            return None
        for info in reds:
            kinds = info.dom_kind()
            ns = len(kinds) - len(kinds.lstrip("S"))
            if ns < 1 or set(kinds[ns:]) != {"R"}:
                return None
            stmt = sch.get(info.block_rv)
            last = stmt.iter_vars[ns - 1].var
            for region in list(stmt.reads) + list(stmt.writes):
                idx = region.region[-1].min
                if not _is_local_var(idx, last):
                    return None
        for info in infos:
            if info.is_injective():
                _schedule_injective_block(sch, info.block_rv, lanes)
                continue
            kinds = info.dom_kind()
            ns = len(kinds) - len(kinds.lstrip("S"))
            loops = sch.get_loops(info.block_rv)
            s_loops, r_loops = list(loops[:ns]), list(loops[ns:])
            inner = s_loops[-1]
            ext = _loop_extent(sch, inner)
            if ext is None:
                return None
            v = ext if ext <= lanes * 4 else (_largest_divisor(ext, lanes * 4, lanes) or ext)
            if v != ext:
                o, inner = sch.split(inner, [None, v])
                s_loops = s_loops[:-1] + [o]
            else:
                s_loops = s_loops[:-1]
            sch.reorder(*s_loops, *r_loops, inner)
            numel = _numel(sch, info.block_rv)
            if s_loops:
                fused = sch.fuse(*s_loops) if len(s_loops) > 1 else s_loops[0]
                if numel is None or numel >= PARALLEL_MIN_ELEMS:
                    sch.parallel(fused)
            else:
                fused = None
            sch.vectorize(inner)
            init = sch.decompose_reduction(info.block_rv, r_loops[0])
            il = sch.get_loops(init)
            sch.vectorize(il[-1])
            # later injective blocks (avg = sum / n) read this output
        return sch


class RowReduction(_CPURule):
    """Any single-output reduction: parallel fused spatial loops, reduction
    inner (not vectorized)."""

    def apply(self, func, target, _tunable):
        normalized = self._normalized(func, target)
        if normalized is None:
            return None
        sch, infos = normalized
        infos = dl.base.try_inline_contiguous_spatial(sch, infos)
        if not any(not b.is_injective() for b in infos):
            return None
        lanes = vector_lanes(target)
        for info in infos:
            if info.is_injective():
                _schedule_injective_block(sch, info.block_rv, lanes)
                continue
            kinds = info.dom_kind()
            ns = len(kinds) - len(kinds.lstrip("S"))
            if ns < 1:
                continue
            loops = sch.get_loops(info.block_rv)
            s_loops = list(loops[:ns])
            fused = sch.fuse(*s_loops) if len(s_loops) > 1 else s_loops[0]
            sch.parallel(fused)
        return sch


class Fallback(_CPURule):
    """Parallelize the outermost spatial loop of every block that allows it."""

    def apply(self, func, target, _tunable):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        root = sch.get_sblock("root") if _has_root(sch) else None
        blocks = sch.get_child_blocks(root) if root is not None else []
        done = False
        for blk in blocks:
            loops = sch.get_loops(blk)
            if not loops:
                continue
            try:
                sch.parallel(loops[0])
                done = True
            except Exception:  # noqa: BLE001, S112 - TVM raises many types
                continue
        return sch if done else None


def _has_root(sch) -> bool:
    try:
        sch.get_sblock("root")
        return True
    except Exception:  # noqa: BLE001 - TVM raises many types
        return False


def cpu_rules() -> list[ScheduleRule]:
    """The rules, in the order dlight should try them."""
    from tvm.s_tir.dlight.cpu import Reduction
    rules = [TiledContraction(), InnerSpatialReduction(), Reduction(), RowReduction(),
             Injective(), Fallback()]
    return [_Safe(r) for r in rules]
