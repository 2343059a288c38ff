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
"""
from __future__ import annotations

import logging

import tvm
import tvm.tirx.stmt
from tvm import s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target

log = logging.getLogger(__name__)

# below this many output elements a kernel is run on one thread: the thread
# pool's wake-up costs more than the work.
PARALLEL_MIN_ELEMS = 4096
PARALLEL_MIN_MACS = 1 << 20


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def vector_lanes(target: Target, dtype_bits: int = 32) -> int:
    """Vector lanes of `dtype_bits`-wide elements for an llvm target."""
    bits = 0
    try:
        from tvm.target.codegen import llvm_get_vector_width
        bits = int(llvm_get_vector_width(target))
    except Exception:  # noqa: BLE001 - TVM raises many types
        bits = 0
    if bits <= 0:
        bits = 128
    return max(bits // max(dtype_bits, 8), 2)


def _int(extent) -> int | None:
    if isinstance(extent, int):
        return extent
    if isinstance(extent, tirx.IntImm):
        return int(extent.value)
    return None


def _loop_extent(sch: s_tir.Schedule, loop) -> int | None:
    return _int(sch.get(loop).extent)


def _largest_divisor(n: int, limit: int, multiple_of: int = 1) -> int:
    for d in range(min(n, limit), 0, -1):
        if n % d == 0 and d % multiple_of == 0:
            return d
    return 0


def col_tile(extent: int, lanes: int, col_vectors: int = 4) -> int:
    """Columns per register tile for an output axis of `extent` (static).

    A power-of-two number of vectors (4, 2, 1, then half and quarter
    vectors) that divides the extent: LLVM handles <48 x float> and the like
    badly (measured: a 96-channel depthwise conv ran 10x slower with 48-lane
    tiles than with 32).  Extents with no such divisor are taken whole when
    small, else tiled with a guarded tail."""
    max_cols = lanes * col_vectors
    c = max_cols
    while c >= max(lanes // 4, 1):
        if extent % c == 0:
            return c
        c //= 2
    return min(extent, max_cols)


def row_tile(ct: int, lanes: int, max_rows: int = 0) -> int:
    """Most rows per register tile of `ct` columns: the accumulators take
    28 of the 32 vector registers (AVX-512 / NEON both have 32)."""
    n_acc = max(1, -(-ct // lanes))
    return max_rows or max(1, min(8, 28 // n_acc))


def _is_local_var(expr, var) -> bool:
    return isinstance(expr, tirx.Var) and expr.same_as(var)


def _uses_var(expr, var) -> bool:
    found = []

    def visit(v):
        if v.same_as(var):
            found.append(v)

    try:
        import tvm_ffi
        tvm_ffi.structural_walk(expr, (tirx.Var, visit), order="post")
    except Exception:  # noqa: BLE001 - TVM raises many types
        return False
    return bool(found)


class _Safe(ScheduleRule):
    """Run a rule; any exception means 'not applicable'."""

    def __init__(self, rule: ScheduleRule):
        self.rule = rule

    def apply(self, func, target, tunable):
        try:
            return self.rule.apply(func, target, tunable)
        except Exception as exc:  # noqa: BLE001 - TVM raises many types
            log.debug("schedule rule %s declined: %s", type(self.rule).__name__, exc)
            return None

    def is_target_available(self, target):
        return self.rule.is_target_available(target)

    def __repr__(self):
        return f"Safe({type(self.rule).__name__})"


class _CPURule(ScheduleRule):
    def is_target_available(self, target: Target) -> bool:
        return target.kind.name == "llvm"


def _numel(sch, block_rv) -> int | None:
    n = 1
    for lp in sch.get_loops(block_rv):
        e = _loop_extent(sch, lp)
        if e is None:
            return None
        n *= e
    return n


def _schedule_injective_block(sch: s_tir.Schedule, block_rv, lanes: int,
                              parallel: bool = True) -> None:
    """Parallel fused outer loops, vectorized innermost loop."""
    loops = sch.get_loops(block_rv)
    if not loops:
        return
    numel = _numel(sch, block_rv)
    inner = loops[-1]
    inner_ext = _loop_extent(sch, inner)
    outer = list(loops[:-1])
    vec = None
    if inner_ext is not None and inner_ext >= 4:
        if inner_ext <= lanes * 4:
            vec = inner
        else:
            v = _largest_divisor(inner_ext, lanes * 4, lanes) or _largest_divisor(inner_ext, lanes * 4)
            if v >= 4:
                o, vec = sch.split(inner, [None, v])
                outer.append(o)
            else:
                outer.append(inner)
    else:
        outer.append(inner)
    if vec is not None:
        sch.vectorize(vec)
    if parallel and outer and (numel is None or numel >= PARALLEL_MIN_ELEMS):
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        sch.parallel(fused)


# --------------------------------------------------------------------------
# matmul / conv
# --------------------------------------------------------------------------

_TensorLoad = getattr(tvm.ir, "TensorLoad", None)


def _is_load(e) -> bool:
    if _TensorLoad is not None and isinstance(e, _TensorLoad):
        return True
    return hasattr(e, "indices") and (hasattr(e, "source") or hasattr(e, "buffer")) \
        and not hasattr(e, "value")


def _load_buf(e):
    return e.source if hasattr(e, "source") else e.buffer


def _strip_cast(e):
    while isinstance(e, tirx.Cast):
        e = e.value
    return e


def _mac_operands(block):
    """For `C[...] = C[...] + A[...] * B[...]` return (C store, A load, B load)."""
    body = block.body
    if not isinstance(body, tirx.stmt.BufferStore):
        return None
    value = _strip_cast(body.value)
    if not isinstance(value, tirx.Add):
        return None
    a, b = value.a, value.b
    if _is_load(b) and _load_buf(b).same_as(body.buffer):
        a, b = b, a
    if not (_is_load(a) and _load_buf(a).same_as(body.buffer)):
        return None
    prod = _strip_cast(b)
    if not isinstance(prod, tirx.Mul):
        return None
    x, y = _strip_cast(prod.a), _strip_cast(prod.b)
    if not (_is_load(x) and _is_load(y)):
        return None
    return body, x, y


class TiledContraction(_CPURule):
    """Register-tiled matmul / conv2d (NHWC) with fused epilogue."""

    def __init__(self, max_rows: int = 0, col_vectors: int = 4):
        self.max_rows = max_rows
        self.col_vectors = col_vectors

    def apply(self, func, target, _tunable):  # pylint: disable=too-many-locals,too-many-branches,too-many-statements
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        reductions = [b for b in infos if not b.is_injective()]
        if len(reductions) != 1:
            return None
        main = reductions[0]
        kinds = main.dom_kind()
        ns = len(kinds) - len(kinds.lstrip("S"))
        if ns < 1 or set(kinds[ns:]) != {"R"}:
            return None
        block = sch.get(main.block_rv)
        ops = _mac_operands(block)
        if ops is None:
            return None
        store, lhs, rhs = ops
        dtype = store.buffer.dtype
        if not dtype.startswith("float"):
            return None
        iters = block.iter_vars
        col_var = iters[ns - 1].var
        # the column axis must be the innermost index of the output
        if not _is_local_var(store.indices[-1], col_var):
            return None
        lanes = vector_lanes(target, int(dtype[5:] or 32))

        main_idx = infos.index(main)
        producers = infos[:main_idx]
        consumers = infos[main_idx + 1:]

        # --- epilogue: inline the chain of elementwise consumers into one block.
        # First inline the inner links forward into their readers: an
        # epilogue such as gelu, x * (0.5 + 0.5 * erf(x / sqrt 2)), ends in a
        # block that reads two intermediates, which a reverse inline refuses.
        for info in consumers[1:-1]:
            try:
                sch.compute_inline(info.block_rv)
                consumers.remove(info)
            except Exception:  # noqa: BLE001, S110 - TVM raises many types
                pass
        for info in reversed(consumers[1:]):
            try:
                sch.reverse_compute_inline(info.block_rv)
                consumers.remove(info)
            except Exception:  # noqa: BLE001, S110 - TVM raises many types
                pass
        if len(consumers) > 1:
            return None
        # producers that are plain reshapes/broadcasts get inlined; padding
        # stays a separate stage, except for depthwise convolutions (the input
        # is read along the vectorized channel axis, there is no reduction
        # over channels to amortize a copy): there the bounds check is cheaper
        depthwise = all(_uses_var(ld.indices[-1], col_var) for ld in (lhs, rhs))
        for info in producers:
            stmt = sch.get(info.block_rv)
            if "pad" in stmt.name_hint.lower() and not depthwise:
                continue  # dense conv: a padded copy beats a bounds check per load
            try:
                sch.compute_inline(info.block_rv)
            except Exception:  # noqa: BLE001, S110 - TVM raises many types
                pass

        loops = sch.get_loops(main.block_rv)
        s_loops, r_loops = list(loops[:ns]), list(loops[ns:])
        col = s_loops[-1]
        col_ext = _loop_extent(sch, col)
        if col_ext is None:
            return None
        # ---- columns
        ct = col_tile(col_ext, lanes, self.col_vectors)
        # ---- rows
        max_rows = row_tile(ct, lanes, self.max_rows)
        row = s_loops[-2] if ns >= 2 else None
        row_ext = _loop_extent(sch, row) if row is not None else None
        if row is None:
            rt = 1
        elif row_ext is None:
            rt = max_rows
        else:
            rt = _largest_divisor(row_ext, max_rows)
            if rt < max(2, max_rows // 2) and row_ext > max_rows:
                rt = max_rows  # guarded tail beats a tiny tile
        # ---- tile
        col_o, col_i = sch.split(col, [None, ct])
        if row is not None and rt > 1:
            row_o, row_i = sch.split(row, [None, rt])
        else:
            row_o, row_i = row, None
        outer = []
        rest = s_loops[:-2] if ns >= 2 else []
        # column blocks outermost (weight panel stays in cache), then the rest
        outer = [col_o] + rest + ([row_o] if row_o is not None else [])
        # symbolic extents go outermost: the fused index then splits back into
        # the loop variables with constant divisors only (a symbolic divisor
        # defeats the accumulator's compaction into registers)
        outer = ([lp for lp in outer if _loop_extent(sch, lp) is None]
                 + [lp for lp in outer if _loop_extent(sch, lp) is not None])
        inner = ([row_i] if row_i is not None else []) + [col_i]
        sch.reorder(*outer, *r_loops, *inner)
        # drop unit loops from the parallel fusion
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]

        # ---- accumulator + epilogue
        if consumers:
            epi = consumers[0].block_rv
            # the intermediate becomes a per-tile local buffer once compacted
            sch.set_scope(main.block_rv, 0, "local")
        else:
            epi = sch.cache_write(main.block_rv, 0, "local")
        sch.reverse_compute_at(epi, fused, preserve_unit_loops=False)
        eloops = sch.get_loops(epi)[1:]
        if eloops:
            _vectorize_tail(sch, eloops, lanes)

        numel = _numel(sch, main.block_rv)
        # a contraction under ~1M multiply-adds (a few microseconds on one
        # core) runs faster than the thread pool's wake-up: keep it serial
        if numel is None or numel >= PARALLEL_MIN_MACS:
            sch.parallel(fused)
        if row_i is not None:
            sch.unroll(row_i)
        sch.vectorize(col_i)
        init = sch.decompose_reduction(main.block_rv, r_loops[0])
        iloops = sch.get_loops(init)
        _vectorize_tail(sch, iloops[1:], lanes)

        # ---- remaining producers (padding): parallel + vectorized
        for info in producers:
            try:
                blk = sch.get_sblock(info.name)
            except Exception:  # noqa: BLE001, S112 - TVM raises many types
                continue
            try:
                _schedule_injective_block(sch, blk, lanes)
            except Exception:  # noqa: BLE001, S110 - TVM raises many types
                pass
        return sch


def _vectorize_tail(sch, loops, lanes):
    """Vectorize the innermost of `loops` (static extent), unroll the others."""
    if not loops:
        return
    inner = loops[-1]
    ext = _loop_extent(sch, inner)
    if ext is not None and ext > 1:
        sch.vectorize(inner)
    for lp in loops[:-1]:
        e = _loop_extent(sch, lp)
        if e is not None and 1 < e <= 16:
            sch.unroll(lp)


# --------------------------------------------------------------------------
# injective
# --------------------------------------------------------------------------

class Injective(_CPURule):
    def apply(self, func, target, _tunable):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None or not infos:
            return None
        if not all(b.is_injective() for b in infos):
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
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
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
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
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
