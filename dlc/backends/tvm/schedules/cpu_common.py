"""What the CPU schedule rules share: vector width and tile sizes, loop
extents, the rule base classes (`_CPURule`, the exception-swallowing `_Safe`)
and the parallel + vectorized schedule of an injective block."""
from __future__ import annotations

import logging

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target

log = logging.getLogger("dlc.backends.tvm.schedules.cpu")   # the rules' one logger, named as before the split

# below this many output elements a kernel is run on one thread: the thread
# pool's wake-up costs more than the work.
PARALLEL_MIN_ELEMS = 4096
PARALLEL_MIN_MACS = 1 << 20


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

    def _normalized(self, func, target):
        """(schedule, block infos) of `func` when this rule can look at it: a
        PrimFunc for this target whose blocks dlight can normalize; else None."""
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        return None if infos is None else (sch, infos)


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

