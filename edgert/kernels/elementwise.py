"""Elementwise kernels: binary ops with numpy broadcasting and a fused activation, and unary maps.

Broadcasting is resolved at prepare time into (shape, strides) of at most 4 coalesced dims, with
stride 0 on broadcast dims, so the kernel runs plain nested loops whose innermost one is usually
contiguous. Same-shape and scalar operands take flat loops that LLVM vectorises.
"""

from __future__ import annotations

from ._jit import inline, kernel
from .act import apply_act

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


@kernel
def f32_binary_same(a, b, out, op, code, p, q):
    """a, b, out: flat, same length (out may alias a or b)."""
    for i in range(out.size):
        out[i] = apply_act(_binary(a[i], b[i], op), code, p, q)


@kernel
def f32_binary_scalar_b(a, b, out, op, code, p, q):
    """b has one element."""
    s = b[0]
    for i in range(out.size):
        out[i] = apply_act(_binary(a[i], s, op), code, p, q)


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


@kernel
def f32_unary_act(x, out, code, p, q):
    """out = act(x) over flat buffers (out may alias x)."""
    for i in range(out.size):
        out[i] = apply_act(x[i], code, p, q)


@kernel
def f32_prelu_strided4(x, slope, sstr, out, shape):
    """PRelu: slope broadcast over x with element strides sstr (x and out are contiguous)."""
    n0, n1, n2, n3 = shape[0], shape[1], shape[2], shape[3]
    o = 0
    for i0 in range(n0):
        for i1 in range(n1):
            for i2 in range(n2):
                sb = i0 * sstr[0] + i1 * sstr[1] + i2 * sstr[2]
                for i3 in range(n3):
                    v = x[o + i3]
                    out[o + i3] = v if v >= 0.0 else v * slope[sb + i3 * sstr[3]]
                o += n3
