"""Elementwise kernels: binary ops with numpy broadcasting and a fused activation, and unary maps.

Broadcasting is resolved at prepare time into (shape, strides) of at most 4 coalesced dims, with
stride 0 on broadcast dims, so the kernel runs plain nested loops whose innermost one is usually
contiguous. Same-shape and scalar operands take flat loops that LLVM vectorises.
"""

from __future__ import annotations

from ._jit import inline, kernel, prange
from .act import CLIP, HARDSWISH, NONE, RELU, SIGMOID, apply_act
from .work import ITEMS_PER_WORKER, start_work, take

ADD, SUB, MUL, DIV, MAX, MIN, POW = range(7)
BINARY_CODES = {"Add": ADD, "Sub": SUB, "Mul": MUL, "Div": DIV, "Max": MAX, "Min": MIN, "Pow": POW}


@inline
def _binary(x, y, op):
    if op == ADD:
        return x + y
    if op == SUB:
        return x - y
    if op == MUL:
        return x * y
    if op == DIV:
        return x / y
    if op == MAX:
        return max(x, y)
    if op == MIN:
        return min(x, y)
    return x ** y


# LLVM vectorises a loop only when the op and activation codes are compile-time constants: with
# runtime codes the branches stay inside the loop and it runs scalar (measured ~9x slower than a
# copy for a ReLU). The hot combinations below get their own loop, in which inlining turns the
# codes into constants; the rest share the generic loop.
@inline
def _same_loop(a, b, out, op, code, p, q):
    for i in range(out.size):
        out[i] = apply_act(_binary(a[i], b[i], op), code, p, q)


@inline
def _scalar_b_loop(a, s, out, op, code, p, q):
    for i in range(out.size):
        out[i] = apply_act(_binary(a[i], s, op), code, p, q)


@kernel
def f32_binary_same(a, b, out, op, code, p, q):
    """a, b, out: flat, same length (out may alias a or b)."""
    if op == ADD and code == NONE:
        _same_loop(a, b, out, ADD, NONE, p, q)
    elif op == ADD and code == RELU:
        _same_loop(a, b, out, ADD, RELU, p, q)
    elif op == ADD and code == CLIP:
        _same_loop(a, b, out, ADD, CLIP, p, q)
    elif op == MUL and code == NONE:
        _same_loop(a, b, out, MUL, NONE, p, q)
    else:
        _same_loop(a, b, out, op, code, p, q)


@kernel(parallel=True)
def f32_binary_same_mt(a, b, out, op, code, p, q, work):
    """``f32_binary_same`` by work[0] workers, each taking chunks of the flat range in order (work.py):
    on idle cores worker t writes the t-th contiguous part, the band of planes an NCHW depthwise conv
    after it reads on the same core. Chunks are whole cache lines (16 floats)."""
    n = out.size
    items = ITEMS_PER_WORKER * work[0]
    lines = (n + 15) // 16
    start_work(work)
    for _t in prange(work[0]):
        it = take(work, _t, items)
        while it >= 0:
            i0 = min(n, lines * it // items * 16)
            i1 = min(n, lines * (it + 1) // items * 16)
            f32_binary_same(a[i0:i1], b[i0:i1], out[i0:i1], op, code, p, q)
            it = take(work, _t, items)


@kernel
def f32_binary_scalar_b(a, b, out, op, code, p, q):
    """b has one element."""
    s = b[0]
    if op == ADD and code == NONE:
        _scalar_b_loop(a, s, out, ADD, NONE, p, q)
    elif op == MUL and code == NONE:
        _scalar_b_loop(a, s, out, MUL, NONE, p, q)
    else:
        _scalar_b_loop(a, s, out, op, code, p, q)


@kernel
def f32_binary_scalar_a(a, b, out, op, code, p, q):
    """a has one element."""
    s = a[0]
    for i in range(out.size):
        out[i] = apply_act(_binary(s, b[i], op), code, p, q)


# Rows are sliced into views first: indexing with offset + i would make numba emit a negative-index
# wraparound check per element, which stops LLVM from vectorising; range-based indices are provably
# non-negative.
@inline
def _row_b_scalar(a, ao, s, out, o, n, op, code, p, q):
    av = a[ao:ao + n]
    ov = out[o:o + n]
    for i in range(n):
        ov[i] = apply_act(_binary(av[i], s, op), code, p, q)


@inline
def _row_a_scalar(s, b, bo, out, o, n, op, code, p, q):
    bv = b[bo:bo + n]
    ov = out[o:o + n]
    for i in range(n):
        ov[i] = apply_act(_binary(s, bv[i], op), code, p, q)


@inline
def _row_both(a, ao, b, bo, out, o, n, op, code, p, q):
    av = a[ao:ao + n]
    bv = b[bo:bo + n]
    ov = out[o:o + n]
    for i in range(n):
        ov[i] = apply_act(_binary(av[i], bv[i], op), code, p, q)


@inline
def _row_strided(a, ao, s3a, b, bo, s3b, out, o, n, op, code, p, q):
    for i in range(n):
        out[o + i] = apply_act(_binary(a[ao + i * s3a], b[bo + i * s3b], op), code, p, q)


@inline
def _row(a, ao, s3a, b, bo, s3b, out, o, n, op, code, p, q):
    # The usual broadcasts in a convnet: a per-channel scale or bias (one value of b per row of a),
    # or equal rows. Those rows get loops with unit strides, and for Mul/Add without activation
    # constant codes, so they vectorise (the generic strided loop runs scalar: 0.4 ms for a
    # 16x128x128 channel scale in selfie_segmentation).
    if s3a == 1 and s3b == 0:
        if op == MUL and code == NONE:
            _row_b_scalar(a, ao, b[bo], out, o, n, MUL, NONE, p, q)
        elif op == ADD and code == NONE:
            _row_b_scalar(a, ao, b[bo], out, o, n, ADD, NONE, p, q)
        else:
            _row_b_scalar(a, ao, b[bo], out, o, n, op, code, p, q)
    elif s3a == 0 and s3b == 1:
        if op == MUL and code == NONE:
            _row_a_scalar(a[ao], b, bo, out, o, n, MUL, NONE, p, q)
        elif op == ADD and code == NONE:
            _row_a_scalar(a[ao], b, bo, out, o, n, ADD, NONE, p, q)
        else:
            _row_a_scalar(a[ao], b, bo, out, o, n, op, code, p, q)
    elif s3a == 1 and s3b == 1:
        if op == MUL and code == NONE:
            _row_both(a, ao, b, bo, out, o, n, MUL, NONE, p, q)
        elif op == ADD and code == NONE:
            _row_both(a, ao, b, bo, out, o, n, ADD, NONE, p, q)
        else:
            _row_both(a, ao, b, bo, out, o, n, op, code, p, q)
    else:
        _row_strided(a, ao, s3a, b, bo, s3b, out, o, n, op, code, p, q)


@kernel
def f32_binary_strided4(a, astr, b, bstr, out, shape, op, code, p, q):
    """General broadcast over 4 coalesced dims; astr/bstr are element strides (0 = broadcast)."""
    n0, n1, n2, n3 = shape[0], shape[1], shape[2], shape[3]
    s3a = astr[3]
    s3b = bstr[3]
    o = 0
    for i0 in range(n0):
        for i1 in range(n1):
            for i2 in range(n2):
                ab = i0 * astr[0] + i1 * astr[1] + i2 * astr[2]
                bb = i0 * bstr[0] + i1 * bstr[1] + i2 * bstr[2]
                _row(a, ab, s3a, b, bb, s3b, out, o, n3, op, code, p, q)
                o += n3


@inline
def _unary_loop(x, out, code, p, q):
    for i in range(out.size):
        out[i] = apply_act(x[i], code, p, q)


@kernel
def f32_unary_act(x, out, code, p, q):
    """out = act(x) over flat buffers (out may alias x); common codes get constant-code loops (see above)."""
    if code == RELU:
        _unary_loop(x, out, RELU, p, q)
    elif code == CLIP:
        _unary_loop(x, out, CLIP, p, q)
    elif code == SIGMOID:
        _unary_loop(x, out, SIGMOID, p, q)
    elif code == HARDSWISH:
        _unary_loop(x, out, HARDSWISH, p, q)
    else:
        _unary_loop(x, out, code, p, q)


@inline
def _prelu_row_const(x, out, o, n, s):
    # One slope for the whole row (per-channel PRelu in NCHW): a select LLVM vectorises (on sliced
    # views, see _row_b_scalar).
    xv = x[o:o + n]
    ov = out[o:o + n]
    for i in range(n):
        v = xv[i]
        ov[i] = v if v >= 0.0 else v * s


@inline
def _prelu_row_strided(x, slope, out, o, n, sb, ss):
    for i in range(n):
        v = x[o + i]
        out[o + i] = v if v >= 0.0 else v * slope[sb + i * ss]


@kernel
def f32_prelu_strided4(x, slope, sstr, out, shape):
    """PRelu: slope broadcast over x with element strides sstr (x and out are contiguous).

    The common case, a per-channel slope, has stride 0 along the innermost (pixel) dim: that row
    takes a loop with the slope hoisted, because a runtime stride of 0 otherwise defeats
    vectorisation (measured 20x slower).
    """
    n0, n1, n2, n3 = shape[0], shape[1], shape[2], shape[3]
    s3 = sstr[3]
    o = 0
    for i0 in range(n0):
        for i1 in range(n1):
            for i2 in range(n2):
                sb = i0 * sstr[0] + i1 * sstr[1] + i2 * sstr[2]
                if s3 == 0:
                    _prelu_row_const(x, out, o, n3, slope[sb])
                else:
                    _prelu_row_strided(x, slope, out, o, n3, sb, s3)
                o += n3


@inline
def _add_prelu_row_const(x, r, out, o, n, s):
    xv = x[o:o + n]
    rv = r[o:o + n]
    ov = out[o:o + n]
    for i in range(n):
        v = xv[i] + rv[i]
        ov[i] = v if v >= 0.0 else v * s


@inline
def _add_prelu_row_strided(x, r, slope, out, o, n, sb, ss):
    for i in range(n):
        v = x[o + i] + r[o + i]
        out[o + i] = v if v >= 0.0 else v * slope[sb + i * ss]


@inline
def _prelu_rows(x, r, slope, sstr, out, shape, row0, row1, add):
    """Rows [row0, row1) of the coalesced [n0, n1, n2] x n3 view (PRelu, or PRelu(x + r) when add)."""
    n1, n2, n3 = shape[1], shape[2], shape[3]
    s3 = sstr[3]
    for row in range(row0, row1):
        i2 = row % n2
        i1 = (row // n2) % n1
        i0 = row // (n1 * n2)
        sb = i0 * sstr[0] + i1 * sstr[1] + i2 * sstr[2]
        o = row * n3
        if add:
            if s3 == 0:
                _add_prelu_row_const(x, r, out, o, n3, slope[sb])
            else:
                _add_prelu_row_strided(x, r, slope, out, o, n3, sb, s3)
        elif s3 == 0:
            _prelu_row_const(x, out, o, n3, slope[sb])
        else:
            _prelu_row_strided(x, slope, out, o, n3, sb, s3)


@kernel
def f32_add_prelu_strided4(x, r, slope, sstr, out, shape):
    """PRelu(x + r): a residual Add fused into the PRelu that reads it (x, r, out contiguous, same
    shape; out may alias x or r). Slope broadcast as in ``f32_prelu_strided4``."""
    _prelu_rows(x, r, slope, sstr, out, shape, 0, shape[0] * shape[1] * shape[2], True)


@kernel(parallel=True)
def f32_add_prelu_strided4_mt(x, r, slope, sstr, out, shape, T):
    """``f32_add_prelu_strided4`` with the rows split into T contiguous ranges under prange."""
    rows = shape[0] * shape[1] * shape[2]
    for t in prange(T):
        _prelu_rows(x, r, slope, sstr, out, shape, t * rows // T, (t + 1) * rows // T, True)


@kernel(parallel=True)
def f32_prelu_strided4_mt(x, slope, sstr, out, shape, T):
    """``f32_prelu_strided4`` with the rows split into T contiguous ranges under prange."""
    rows = shape[0] * shape[1] * shape[2]
    for t in prange(T):
        _prelu_rows(x, x, slope, sstr, out, shape, t * rows // T, (t + 1) * rows // T, False)
