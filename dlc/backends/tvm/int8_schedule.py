"""Schedules of the int8 kernels built in `int8_compute`.

* `schedule_packed(func, target)`: the groups == 1 conv / dense kernel on
  CPUs.  The accumulator ``acc[N, OH, OW, O / L, L]`` is register-tiled, R
  output columns by T blocks of L channels, with the reduction (kh, kw,
  C / 4) inside the tile; the innermost L x 4 block (L channels, 4 input
  bytes) is tensorized with a dot-product instruction:
    - x86 with AVX512-VNNI: ``dot_16x4_vnni`` (`vpdpbusd`, u8 x s8 -> s32);
    - aarch64 with ``+dotprod``: ``dot_4x4_i8i8s32_sdot`` (`sdot`);
    - otherwise the block is a plain int32 multiply-add vectorized over the
      L channels.  (TVM's ``dot_16x4_avx512`` fallback is NOT used: its
      `vpmaddubsw` saturates to int16 and would break exactness.)
  The requantisation epilogue runs on the tile right after it (the
  accumulator is a local buffer), the outer loops are fused and parallel.
* `schedule_grouped(func, target)`: grouped / depthwise conv: NHWC int32
  accumulator, vectorized over output channels.
* `schedule_cuda(func)`: the packed kernel on CUDA, one output element per
  thread, its 4-byte dot products through `__dp4a` (``dlc_dp4a_u8s8s32``).
"""
from __future__ import annotations

from tvm import s_tir, tirx
from tvm.script import tirx as T
from tvm.s_tir import TensorIntrin

VNNI = "dlc_vnni_16x4_local"
SDOT = "dlc_sdot_4x4_local"
DP4A = "dlc_dp4a_u8s8s32"


def _register_local_variants() -> None:
    """TVM's ``dot_16x4_vnni`` and ``dot_4x4_i8i8s32_sdot``, restated with the
    accumulator C in local memory: tensorize compares buffer scopes, and the
    schedules keep the accumulator tile in a local buffer so that LLVM keeps
    it in registers."""
    try:
        TensorIntrin.get(VNNI)
        return
    except Exception:  # noqa: BLE001, S110 - not registered yet
        pass

    @T.prim_func(s_tir=True)
    def vnni_desc(A: T.Buffer((4,), "uint8", offset_factor=1),
                  B: T.Buffer((16, 4), "int8", offset_factor=1),
                  C: T.Buffer((16,), "int32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def vnni_impl(A: T.Buffer((4,), "uint8", offset_factor=1),
                  B: T.Buffer((16, 4), "int8", offset_factor=1),
                  C: T.Buffer((16,), "int32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            # LLVM 22 declares vpdpbusd.512 as (<16 x i32>, <64 x i8>, <64 x i8>);
            # TVM 0.27's own dot_16x4_vnni passes <16 x i32> and fails to verify
            a = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
            a64 = T.reinterpret(T.broadcast(a, 16), dtype="int8x64")
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"), a64, B.vload([0, 0], dtype="int8x64"),
                dtype="int32x16")

    @T.prim_func(s_tir=True)
    def sdot_desc(A: T.Buffer((4,), "int8", offset_factor=1),
                  B: T.Buffer((4, 4), "int8", offset_factor=1),
                  C: T.Buffer((4,), "int32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:4, 0:4])
            T.writes(C[0:4])
            for i in T.serial(0, 4):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def sdot_impl(A: T.Buffer((4,), "int8", offset_factor=1),
                  B: T.Buffer((4, 4), "int8", offset_factor=1),
                  C: T.Buffer((4,), "int32", offset_factor=1, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:4, 0:4])
            T.writes(C[0:4])
            a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int8x4"), dtype="int32"), 4),
                              dtype="int8x16")
            C[T.ramp(T.int32(0), 1, 4)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.sdot.v4i32.v16i8"),
                C.vload([0], dtype="int32x4"), a, B.vload([0, 0], dtype="int8x16"),
                dtype="int32x4")

    TensorIntrin.register(VNNI, vnni_desc, vnni_impl)
    TensorIntrin.register(SDOT, sdot_desc, sdot_impl)


def _register_dp4a() -> None:
    """`dp4a` on operands in any memory (TVM's own intrinsic insists on shared
    memory; one thread here reads its 4 bytes of x and w straight from global)."""
    try:
        TensorIntrin.get(DP4A)
        return
    except Exception:  # noqa: BLE001, S110 - not registered yet
        pass

    @T.prim_func(s_tir=True)
    def desc(A: T.Buffer((4,), "uint8", offset_factor=1, align=4),
             B: T.Buffer((4,), "int8", offset_factor=1, align=4),
             C: T.Buffer((1,), "int32", offset_factor=1, align=4, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(C[0], A[0:4], B[0:4])
            T.writes(C[0])
            for i in range(0, 4):
                with T.sblock("update"):
                    vi = T.axis.remap("R", [i])
                    C[0] = C[0] + T.cast(A[vi], "int32") * T.cast(B[vi], "int32")

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((4,), "uint8", offset_factor=1, align=4),
             B: T.Buffer((4,), "int8", offset_factor=1, align=4),
             C: T.Buffer((1,), "int32", offset_factor=1, align=4, scope="local")) -> None:
        with T.sblock("root"):
            T.reads(C[0], A[0:4], B[0:4])
            T.writes(C[0])
            C[0] += T.call_pure_extern("__dp4a", A.vload([0], "uint8x4"), B.vload([0], "int8x4"),
                                       T.int32(0), dtype="int32")

    TensorIntrin.register(DP4A, desc, impl)


def cpu_features(target) -> set:
    """The dot-product features of an llvm target: {"vnni"}, {"sdot"} or {}."""
    from tvm.target.codegen import target_has_features
    triple = str(target.attrs.get("mtriple", ""))
    out = set()
    try:
        if triple.startswith("aarch64"):
            if target_has_features("dotprod", target):
                out.add("sdot")
        elif target_has_features("avx512vnni", target):
            out.add("vnni")
    except Exception:  # noqa: BLE001 - an llvm without the target: no features
        return set()
    return out


def lanes_for(target) -> int:
    """L, the channel block of the packed weights, for `target`."""
    if target.kind.name == "cuda":
        return 4
    return 4 if str(target.attrs.get("mtriple", "")).startswith("aarch64") else 16


def _extent(sch, loop) -> int | None:
    e = sch.get(loop).extent
    return int(e.value) if isinstance(e, tirx.IntImm) else None


def _divisor(n: int | None, limit: int) -> int:
    if n is None:
        return 1
    for d in range(min(n, limit), 0, -1):
        if n % d == 0:
            return d
    return 1


def _inline_inputs(sch, names) -> None:
    for name in names:
        try:
            sch.compute_inline(sch.get_sblock(name))
        except Exception:  # noqa: BLE001, S112 - absent stage
            continue


def _output_block(sch):
    """The requantisation block, and whether it writes channels last."""
    try:
        return sch.get_sblock("requant_nhwc"), True
    except Exception:  # noqa: BLE001 - NCHW-blocked output
        return sch.get_sblock("requant"), False


def _schedule_pad(sch) -> None:
    blk = sch.get_sblock("x_nhwc_pad")
    b, i, j, k = sch.get_loops(blk)
    sch.parallel(sch.fuse(b, i))


def schedule_packed(func: tirx.PrimFunc, target) -> tirx.PrimFunc:
    """Tile, tensorize and parallelize an `int8_compute.qconv2d_packed` kernel."""
    feats = cpu_features(target)
    intrin = VNNI if "vnni" in feats else SDOT if "sdot" in feats else None
    sch = s_tir.Schedule(func)
    _inline_inputs(sch, ["x_rows"])
    _schedule_pad(sch)
    acc = sch.get_sblock("acc")
    b, i, j, o, lane, rkh, rkw, rcb, rci = sch.get_loops(acc)
    lanes = _extent(sch, lane)
    rows = _divisor(_extent(sch, j), 8 if lanes == 16 else 6)
    blocks = 2 if lanes == 16 else 4
    blocks = blocks if (_extent(sch, o) or 1) % blocks == 0 else 1
    jo, ji = sch.split(j, [None, rows])
    oo, oi = sch.split(o, [None, blocks])
    sch.reorder(b, i, jo, oo, rkh, rkw, rcb, ji, oi, lane, rci)
    out, _ = _output_block(sch)
    sch.reverse_compute_at(out, oo)
    sch.set_scope(acc, 0, "local")
    sch.parallel(sch.fuse(b, i, jo, oo))
    sch.unroll(ji)
    sch.unroll(oi)
    _vectorize_epilogue(sch, out)
    if intrin is None:   # before decompose_reduction: TVM vectorizes only whole reductions
        sch.reorder(rci, lane)
        sch.unroll(rci)
        sch.vectorize(lane)
    init = sch.decompose_reduction(acc, rkh)
    sch.vectorize(sch.get_loops(init)[-1])
    if intrin is not None:
        _register_local_variants()
        sch.tensorize(lane, intrin)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def _vectorize_epilogue(sch, out) -> None:
    """The requantisation of a tile: every loop unrolled but the innermost,
    which is vectorized.  Below the tile's parallel loop come its loops of
    extent > 1 (reverse_compute_at emits no unit loops): (o, lane, j) for the
    NCHW-blocked output, whose innermost j (the tile's R columns) is
    contiguous in y; (j, o, lane) for channels last, whose lanes are.  So the
    int64 arithmetic is vector code and the stores are contiguous.  (Lanes
    innermost for NCHW, byte stores R * OW apart, measured 1.3-2x slower on
    1x1 convolutions.)"""
    inner = sch.get_loops(out)[1:]
    last = _extent(sch, inner[-1])
    if len(inner) >= 2 and last not in (4, 8, 16):
        # a column count such as 7 (OW = 28, 14, 7) makes <7 x i64> vectors, which
        # LLVM splits badly: vectorize the lanes instead, stores then scalar
        inner = [*inner[:-2], inner[-1], inner[-2]]
        sch.reorder(*inner)
    for loop in inner[:-1]:
        sch.unroll(loop)
    sch.vectorize(inner[-1])


def schedule_grouped(func: tirx.PrimFunc, target) -> tirx.PrimFunc:
    """Vectorize a grouped / depthwise `int8_compute.grouped_conv` over its
    output channels, rows of the output unrolled, outer loops parallel."""
    sch = s_tir.Schedule(func)
    _schedule_pad(sch)
    acc = sch.get_sblock("acc")
    b, i, j, o, rkh, rkw, rc = sch.get_loops(acc)
    vec = 16 if (_extent(sch, o) or 1) % 16 == 0 else 1
    oo, oi = sch.split(o, [None, vec])
    rows = _divisor(_extent(sch, j), 4)
    jo, ji = sch.split(j, [None, rows])
    sch.reorder(b, i, jo, oo, rkh, rkw, rc, ji, oi)
    out = sch.get_sblock("requant")
    sch.reverse_compute_at(out, oo)
    sch.set_scope(acc, 0, "local")
    sch.parallel(sch.fuse(b, i, jo, oo))
    sch.unroll(ji)
    if vec > 1:
        sch.vectorize(oi)   # before decompose_reduction: TVM vectorizes only whole reductions
    init = sch.decompose_reduction(acc, rkh)
    sch.vectorize(sch.get_loops(init)[-1])
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def schedule_cuda(func: tirx.PrimFunc, threads: int = 128) -> tirx.PrimFunc:
    """One thread per accumulator element, the reduction's 4-byte steps by `__dp4a`."""
    _register_dp4a()
    sch = s_tir.Schedule(func)
    _inline_inputs(sch, ["x_rows"])
    pad = sch.get_sblock("x_nhwc_pad")
    fused = sch.fuse(*sch.get_loops(pad))
    bx, tx = sch.split(fused, [None, threads])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    acc = sch.get_sblock("acc")
    b, i, j, o, lane, rkh, rkw, rcb, rci = sch.get_loops(acc)
    fused = sch.fuse(b, i, j, o, lane)
    bx, tx = sch.split(fused, [None, _divisor(_extent(sch, fused), threads)])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    out, _ = _output_block(sch)
    sch.reverse_compute_at(out, tx)
    sch.set_scope(acc, 0, "local")
    sch.decompose_reduction(acc, rkh)
    sch.tensorize(rci, DP4A)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)
