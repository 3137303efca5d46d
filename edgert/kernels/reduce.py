"""Reduction and softmax kernels.

Prepare coalesces the input into at most three dims ``[outer, n, inner]`` where ``n`` is the reduced
(or softmax) extent: ``inner == 1`` takes the row kernels (contiguous rows, vectorised), otherwise the
"mid" kernels accumulate whole ``inner``-long rows at a time. Axis sets that do not coalesce to that
form (e.g. axes 0 and 2 of a 4-d tensor) take ``f32_reduce_tables`` with precomputed offsets.

Sums accumulate in float64: a mean over a 56x56 plane in float32 would lose ~1e-5 relative.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel

SUM, MEAN, MAX = range(3)
CODES = {"ReduceSum": SUM, "ReduceMean": MEAN, "ReduceMax": MAX}


@kernel
def f32_reduce_rows(x, out, outer, n, op, scale):
    """out[o] = reduce(x[o*n:(o+1)*n]) for o < outer; sums are multiplied by ``scale`` (1/n for mean).

    x, out: flat C-contiguous. ``op`` is MAX or SUM/MEAN (both sum; ``scale`` makes the mean).
    """
    if op == MAX:
        for o in range(outer):
            row = x[o * n:(o + 1) * n]
            m = np.float32(-np.inf)
            for i in range(n):
                m = max(m, row[i])
            out[o] = m
    else:
        for o in range(outer):
            row = x[o * n:(o + 1) * n]
            s = 0.0
            for i in range(n):
                s += row[i]
            out[o] = s * scale


@kernel
def f32_reduce_mid(x, out, acc, outer, n, inner, op, scale):
    """x viewed as [outer, n, inner] reduced over n into out [outer, inner].

    acc: float64 scratch of ``inner`` elements (used by sums only).
    """
    if op == MAX:
        for o in range(outer):
            orow = out[o * inner:(o + 1) * inner]
            for i in range(inner):
                orow[i] = -np.inf
            for r in range(n):
                base = (o * n + r) * inner
                xrow = x[base:base + inner]
                for i in range(inner):
                    orow[i] = max(orow[i], xrow[i])
    else:
        for o in range(outer):
            for i in range(inner):
                acc[i] = 0.0
            for r in range(n):
                base = (o * n + r) * inner
                xrow = x[base:base + inner]
                for i in range(inner):
                    acc[i] += xrow[i]
            orow = out[o * inner:(o + 1) * inner]
            for i in range(inner):
                orow[i] = acc[i] * scale


@kernel
def f32_reduce_tables(x, out, out_off, red_off, op, scale):
    """General axes: out[k] = reduce over j of x[out_off[k] + red_off[j]] (int64 offset tables)."""
    for k in range(out.size):
        b = out_off[k]
        if op == MAX:
            m = np.float32(-np.inf)
            for j in range(red_off.size):
                m = max(m, x[b + red_off[j]])
            out[k] = m
        else:
            s = 0.0
            for j in range(red_off.size):
                s += x[b + red_off[j]]
            out[k] = s * scale


@kernel
def f32_softmax_rows(x, out, outer, n):
    """Softmax over contiguous rows of n (the last axis): max-subtracted, sum in float64."""
    for o in range(outer):
        xr = x[o * n:(o + 1) * n]
        orow = out[o * n:(o + 1) * n]
        m = np.float32(-np.inf)
        for i in range(n):
            m = max(m, xr[i])
        s = 0.0
        for i in range(n):
            e = np.exp(xr[i] - m)
            orow[i] = e
            s += e
        inv = np.float32(1.0 / s)
        for i in range(n):
            orow[i] *= inv


@kernel
def f32_softmax_mid(x, out, mx, acc, outer, n, inner):
    """Softmax over the middle axis of x viewed as [outer, n, inner], one inner-long row at a time.

    mx: float32 scratch, acc: float64 scratch, both of ``inner`` elements.
    """
    for o in range(outer):
        for i in range(inner):
            mx[i] = -np.inf
            acc[i] = 0.0
        for r in range(n):
            base = (o * n + r) * inner
            xrow = x[base:base + inner]
            for i in range(inner):
                mx[i] = max(mx[i], xrow[i])
        for r in range(n):
            base = (o * n + r) * inner
            xrow = x[base:base + inner]
            orow = out[base:base + inner]
            for i in range(inner):
                e = np.exp(xrow[i] - mx[i])
                orow[i] = e
                acc[i] += e
        for i in range(inner):
            acc[i] = 1.0 / acc[i]
        for r in range(n):
            base = (o * n + r) * inner
            orow = out[base:base + inner]
            for i in range(inner):
                orow[i] *= acc[i]
