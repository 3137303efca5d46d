"""Elementwise kernels: binary ops with numpy broadcasting and a fused activation, and unary maps.

Broadcasting is resolved at prepare time into (shape, strides) of at most 4 coalesced dims, with
stride 0 on broadcast dims, so the kernel runs plain nested loops whose innermost one is usually
contiguous. Same-shape and scalar operands take flat loops that LLVM vectorises.
"""

from __future__ import annotations

from ._jit import inline, kernel
from .act import CLIP, HARDSWISH, NONE, RELU, SIGMOID, apply_act

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


@kernel
def f32_binary_strided4(a, astr, b, bstr, out, shape, op, code, p, q):
    """General broadcast over 4 coalesced dims; astr/bstr are element strides (0 = broadcast)."""
    n0, n1, n2, n3 = shape[0], shape[1], shape[2], shape[3]
    o = 0
    for i0 in range(n0):
        for i1 in range(n1):
            for i2 in range(n2):
                ab = i0 * astr[0] + i1 * astr[1] + i2 * astr[2]
                bb = i0 * bstr[0] + i1 * bstr[1] + i2 * bstr[2]
                s3a = astr[3]
                s3b = bstr[3]
                for i3 in range(n3):
                    out[o + i3] = apply_act(_binary(a[ab + i3 * s3a], b[bb + i3 * s3b], op), code, p, q)
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
    # One slope for the whole row (per-channel PRelu in NCHW): a select LLVM vectorises.
    for i in range(n):
        v = x[o + i]
        out[o + i] = v if v >= 0.0 else v * s


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
