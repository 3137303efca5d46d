"""A few explicit SIMD vector operations for kernels whose hot loop LLVM will not vectorise well itself.

Numba's loop vectoriser only vectorises innermost loops, so a GEMM written with loops keeps its
accumulators in memory (one load and one store per FMA) and runs at ~70% of the FMA peak. A
register-blocked micro-kernel needs accumulators that live in registers across the K loop: these
helpers give numba a value type ``f32v`` (an LLVM ``<VW x float>``) and the handful of operations
such kernels need: loads and stores (plain, masked for row edges and tails), broadcasts, fused
multiply-add, even/odd deinterleaving (stride-2 taps), clamps for fused relu/clip, and a fence
against fastmath reassociation. They are generated inline into their callers, so kernels using
them cache like any other (``cache=True`` works).

The IR is target-independent: on AVX-512 hosts ``VW`` is 16 (one zmm register), with AVX 8, and 4
elsewhere (NEON, SSE), so a vector is always one machine register and register-blocked tiles written
as ``MR x NV`` vectors fit the register file on every target. ``llvmlite`` is numba's own code
generator (a pinned numba dependency), not an extra runtime package.

Preconditions: plain loads and stores are unchecked (no bounds checks, no negative-index
wraparound); callers guarantee ``0 <= i`` and ``i + VW <= a.size``. Arrays are 1-D, float32, C order.
"""

from __future__ import annotations

import platform

import numba
from llvmlite import ir
from numba import types
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic, models, register_model

from ._jit import inline


def _target() -> tuple:
    """(floats per native vector register, has a fused multiply-add) of the CPU numba compiles for."""
    if numba.config.CPU_NAME is not None and numba.config.CPU_FEATURES is None:
        # An explicit CPU model (e.g. 'generic' for portable caches): assume 128-bit vectors.
        return 4, platform.machine().lower() in ("aarch64", "arm64")
    features = set((numba.config.CPU_FEATURES or get_host_cpu_features()).split(","))
    fma = "+fma" in features or platform.machine().lower() in ("aarch64", "arm64")  # FMA is base ARMv8
    if "+avx512f" in features:
        return 16, fma
    if "+avx" in features:
        return 8, fma
    return 4, fma


VW, HAS_FMA = _target()
_LLVM_VEC = ir.VectorType(ir.FloatType(), VW)


class F32Vector(types.Type):
    """A SIMD register of VW float32 lanes (only lives inside kernels, never crosses into Python)."""

    def __init__(self):
        super().__init__(name=f"f32x{VW}")


f32v = F32Vector()


@register_model(F32Vector)
class _F32VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _LLVM_VEC)


def _is_f32_array(a):
    return isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 1 and a.layout == "C"


def _element_ptr(context, builder, arrty, arr, idx, idxty):
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.gep(data, [context.cast(builder, idx, idxty, types.intp)])


@intrinsic
def vload(typingctx, a, i):
    """The VW floats a[i:i+VW] as a vector (unaligned load)."""
    if not (_is_f32_array(a) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        return builder.load(builder.bitcast(ptr, _LLVM_VEC.as_pointer()), align=4)

    return f32v(a, i), codegen


@intrinsic
def vstore(typingctx, a, i, v):
    """a[i:i+VW] = v (unaligned store)."""
    if not (_is_f32_array(a) and isinstance(i, types.Integer) and v == f32v) or not a.mutable:
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        builder.store(args[2], builder.bitcast(ptr, _LLVM_VEC.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.void(a, i, v), codegen


def _splat(builder, scalar):
    undef = ir.Constant(_LLVM_VEC, ir.Undefined)
    first = builder.insert_element(undef, scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(first, undef, ir.Constant(ir.VectorType(ir.IntType(32), VW), [0] * VW))


@intrinsic
def vbroadcast(typingctx, s):
    """A vector with every lane equal to the scalar s (converted to float32)."""
    if not isinstance(s, (types.Float, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return _splat(builder, context.cast(builder, args[0], sig.args[0], types.float32))

    return f32v(s), codegen


@intrinsic
def vbroadcast_at(typingctx, a, i):
    """A vector with every lane equal to a[i] (unchecked scalar load; no wraparound test)."""
    if not (_is_f32_array(a) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        return _splat(builder, builder.load(ptr, align=4))

    return f32v(a, i), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c lane-wise, one fused instruction. It is emitted as a call to llvm.fma (llvm.fmuladd
    where the target has no FMA unit, which then splits into a multiply and an add): numba's fastmath
    flags let LLVM reassociate plain fadd/fmul, and it does, turning sums written as several
    independent chains (for instruction-level parallelism) into one long dependent chain. Calls to
    llvm.fma are left alone, so the chains stay as written."""
    if not (a == b == c == f32v):
        return None

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(_LLVM_VEC, [_LLVM_VEC, _LLVM_VEC, _LLVM_VEC])
        name = "llvm.fma" if HAS_FMA else "llvm.fmuladd"
        return builder.call(_declare(builder.module, fnty, f"{name}.v{VW}f32"), [args[0], args[1], args[2]])

    return f32v(a, b, c), codegen


@intrinsic
def vadd(typingctx, a, b):
    """a + b lane-wise."""
    if not (a == b == f32v):
        return None

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])

    return f32v(a, b), codegen


@intrinsic
def vclamp(typingctx, v, lo, hi):
    """min(max(v, lo), hi) lane-wise with scalar bounds; NaN lanes stay NaN (like the scalar clip)."""
    if not (v == f32v and isinstance(lo, types.Float) and isinstance(hi, types.Float)):
        return None

    def codegen(context, builder, sig, args):
        lo_v = _splat(builder, context.cast(builder, args[1], sig.args[1], types.float32))
        hi_v = _splat(builder, context.cast(builder, args[2], sig.args[2], types.float32))
        # select(v < lo, lo, v) keeps NaN (the comparison is false), as min(max(v, a), b) does.
        r = builder.select(builder.fcmp_ordered("<", args[0], lo_v), lo_v, args[0])
        return builder.select(builder.fcmp_ordered(">", r, hi_v), hi_v, r)

    return f32v(v, lo, hi), codegen


@intrinsic
def vrelu(typingctx, v):
    """max(v, 0) lane-wise; NaN lanes stay NaN (like the scalar relu)."""
    if v != f32v:
        return None

    def codegen(context, builder, sig, args):
        zero = ir.Constant(_LLVM_VEC, [0.0] * VW)
        return builder.select(builder.fcmp_unordered(">", args[0], zero), args[0], zero)

    return f32v(v), codegen



def _lane_mask(builder, first, lo, hi):
    """<VW x i1>: lane l is on when lo <= first + l < hi (first, lo, hi: i64 values)."""
    i64v = ir.VectorType(ir.IntType(64), VW)
    iota = ir.Constant(i64v, list(range(VW)))
    idx = builder.add(_splat_int(builder, first, i64v), iota)
    ge = builder.icmp_signed(">=", idx, _splat_int(builder, lo, i64v))
    lt = builder.icmp_signed("<", idx, _splat_int(builder, hi, i64v))
    return builder.and_(ge, lt)


def _splat_int(builder, value, vecty):
    undef = ir.Constant(vecty, ir.Undefined)
    first = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(first, undef, ir.Constant(ir.VectorType(ir.IntType(32), VW), [0] * VW))


def _masked_load(builder, ptr, mask):
    fnty = ir.FunctionType(_LLVM_VEC, [ptr.type, ir.IntType(32), mask.type, _LLVM_VEC])
    fn = _declare(builder.module, fnty, f"llvm.masked.load.v{VW}f32.p0")
    zero = ir.Constant(_LLVM_VEC, [0.0] * VW)
    return builder.call(fn, [ptr, ir.Constant(ir.IntType(32), 4), mask, zero])


def _declare(module, fnty, name):
    try:
        return module.get_global(name)
    except KeyError:
        return ir.Function(module, fnty, name=name)


def _ints(context, builder, sig, args, first):
    return [context.cast(builder, v, t, types.int64) for v, t in zip(args[first:], sig.args[first:])]


@intrinsic
def vload_window(typingctx, a, base, col, n):
    """Lanes l of a[base + col + l] for 0 <= col + l < n, zero elsewhere: one vector of a row of n
    elements with zero padding on both sides. Lanes outside the row are never read (masked load)."""
    if not (_is_f32_array(a) and all(isinstance(v, types.Integer) for v in (base, col, n))):
        return None

    def codegen(context, builder, sig, args):
        base_v, col_v, n_v = _ints(context, builder, sig, args, 1)
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        ptr = builder.gep(data, [builder.add(base_v, col_v)])
        mask = _lane_mask(builder, col_v, ir.Constant(ir.IntType(64), 0), n_v)
        return _masked_load(builder, builder.bitcast(ptr, _LLVM_VEC.as_pointer()), mask)

    return f32v(a, base, col, n), codegen


@intrinsic
def vstore_n(typingctx, a, i, v, n):
    """a[i:i+n] = the first n lanes of v (0 <= n <= VW); nothing past a[i+n-1] is touched."""
    if not (_is_f32_array(a) and isinstance(i, types.Integer) and v == f32v and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        i_v = context.cast(builder, args[1], sig.args[1], types.intp)
        n_v = context.cast(builder, args[3], sig.args[3], types.int64)
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        ptr = builder.bitcast(builder.gep(data, [i_v]), _LLVM_VEC.as_pointer())
        mask = _lane_mask(builder, ir.Constant(ir.IntType(64), 0), ir.Constant(ir.IntType(64), 0), n_v)
        fnty = ir.FunctionType(ir.VoidType(), [_LLVM_VEC, ptr.type, ir.IntType(32), mask.type])
        fn = _declare(builder.module, fnty, f"llvm.masked.store.v{VW}f32.p0")
        builder.call(fn, [args[2], ptr, ir.Constant(ir.IntType(32), 4), mask])
        return context.get_dummy_value()

    return types.void(a, i, v, n), codegen


@intrinsic
def vdeinterleave(typingctx, lo, hi):
    """(even lanes, odd lanes) of the 2*VW floats lo ++ hi: a stride-2 gather from two loads."""
    if not (lo == hi == f32v):
        return None
    pair = types.UniTuple(f32v, 2)

    def codegen(context, builder, sig, args):
        i32v = ir.VectorType(ir.IntType(32), VW)
        even = builder.shuffle_vector(args[0], args[1], ir.Constant(i32v, list(range(0, 2 * VW, 2))))
        odd = builder.shuffle_vector(args[0], args[1], ir.Constant(i32v, list(range(1, 2 * VW, 2))))
        return context.make_tuple(builder, pair, [even, odd])

    return pair(lo, hi), codegen


@intrinsic
def vfence(typingctx, v):
    """v unchanged, behind llvm.arithmetic.fence: fastmath may not reassociate across it. Partial sums
    computed as independent FMA chains (for instruction-level parallelism) are fenced before they
    are added, or LLVM folds the adds into the chains and makes one long dependent chain of them."""
    if v != f32v:
        return None

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(_LLVM_VEC, [_LLVM_VEC])
        return builder.call(_declare(builder.module, fnty, f"llvm.arithmetic.fence.v{VW}f32"), [args[0]])

    return f32v(v), codegen


@intrinsic
def vmul(typingctx, a, b):
    """a * b lane-wise."""
    if not (a == b == f32v):
        return None

    def codegen(context, builder, sig, args):
        return builder.fmul(args[0], args[1])

    return f32v(a, b), codegen


@intrinsic
def fetch_add(typingctx, a, i, v):
    """Atomically a[i] += v, returning the old value (int64 arrays; sequentially consistent): the
    shared work counter of ``_mt`` kernels, so a worker whose core is busy or slower takes fewer
    items instead of holding up the parallel region (numba's prange splits iterations statically)."""
    if not (isinstance(a, types.Array) and a.dtype == types.int64 and a.ndim == 1 and a.layout == "C"
            and a.mutable and isinstance(i, types.Integer) and isinstance(v, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        return builder.atomic_rmw("add", ptr, context.cast(builder, args[2], sig.args[2], types.int64), "seq_cst")

    return types.int64(a, i, v), codegen


@inline
def vload_row(x, xo, c, n):
    """Lanes x[xo + c + l] of a row of n elements starting at x[xo], zero outside the row: a plain
    load when the whole vector is inside, a masked one at the edges (zero padding for free)."""
    if c >= 0 and c + VW <= n:
        return vload(x, xo + c)
    return vload_window(x, xo, c, n)
