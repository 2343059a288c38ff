"""The `TiledContraction` CPU rule: one multiply-accumulate reduction (matmul,
dense, batched matmul, NHWC/HWIO conv2d, grouped and depthwise conv2d) plus an
elementwise epilogue, register-tiled R rows x C vectorized columns with the
reduction inside the tile and the epilogue computed from a local accumulator
(see `cpu`'s docstring for the whole rule set)."""
from __future__ import annotations

import tvm
import tvm.tirx.stmt
from tvm import tirx

from .cpu_common import (
    PARALLEL_MIN_MACS,
    _CPURule,
    _is_local_var,
    _largest_divisor,
    _loop_extent,
    _numel,
    _schedule_injective_block,
    _uses_var,
    _vectorize_tail,
    col_tile,
    row_tile,
    vector_lanes,
)

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

    def apply(self, func, target, _tunable):
        normalized = self._normalized(func, target)
        if normalized is None:
            return None
        sch, infos = normalized
        m = _match_contraction(sch, infos, target)
        if m is None:
            return None
        main, ns, lanes, depthwise = m
        main_idx = infos.index(main)
        producers = infos[:main_idx]
        consumers = _inline_epilogue(sch, infos[main_idx + 1:])
        if consumers is None:
            return None
        _inline_producers(sch, producers, depthwise)
        tiled = self._tile(sch, main, ns, lanes)
        if tiled is None:
            return None
        fused, row_i, col_i, r_loops = tiled
        _accumulate(sch, main, consumers, fused, row_i, col_i, r_loops, lanes)
        _schedule_producers(sch, producers, lanes)
        return sch

    def _tile(self, sch, main, ns: int, lanes: int):
        """Split the output into R rows x C columns and order the loops: the fused
        parallel outer loops, the reduction, then the tile.  Returns (fused outer
        loop, row loop in the tile or None, column loop in the tile, reduction
        loops), or None when the column extent is symbolic."""
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
        return fused, row_i, col_i, r_loops


def _match_contraction(sch, infos, target):
    """(main block info, number of spatial axes, vector lanes, depthwise?) when
    `infos` hold exactly one float multiply-accumulate reduction whose column
    axis is the output's innermost index; None otherwise."""
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
    # depthwise: both operands are read along the (vectorized) channel axis
    depthwise = all(_uses_var(ld.indices[-1], col_var) for ld in (lhs, rhs))
    return main, ns, lanes, depthwise


def _inline_epilogue(sch, consumers):
    """Inline the chain of elementwise consumers into one block; the consumers
    left (at most one), or None when more than one is left."""
    consumers = list(consumers)
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
    return consumers


def _inline_producers(sch, producers, depthwise: bool) -> None:
    """Producers that are plain reshapes/broadcasts get inlined; padding stays a
    separate stage, except for depthwise convolutions (the input is read along
    the vectorized channel axis, there is no reduction over channels to amortize
    a copy): there the bounds check is cheaper."""
    for info in producers:
        stmt = sch.get(info.block_rv)
        if "pad" in stmt.name_hint.lower() and not depthwise:
            continue  # dense conv: a padded copy beats a bounds check per load
        try:
            sch.compute_inline(info.block_rv)
        except Exception:  # noqa: BLE001, S110 - TVM raises many types
            pass


def _accumulate(sch, main, consumers, fused, row_i, col_i, r_loops, lanes: int) -> None:
    """The accumulator as a per-tile local buffer, the epilogue computed from it
    right after the tile; parallel outer loop, unrolled rows, vectorized columns."""
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


def _schedule_producers(sch, producers, lanes: int) -> None:
    """The producers not inlined (padding): parallel + vectorized."""
    for info in producers:
        try:
            blk = sch.get_sblock(info.name)
        except Exception:  # noqa: BLE001, S112 - TVM raises many types
            continue
        try:
            _schedule_injective_block(sch, blk, lanes)
        except Exception:  # noqa: BLE001, S110 - TVM raises many types
            pass
