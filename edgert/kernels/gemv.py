"""Matrix @ vector products: FullyConnected with a small batch, straight on W [M, K] (no packing).

y[r*M + m] = act(bias[m] + W[m, :] . x[r*K:(r+1)*K]) for each of ``rows`` input vectors. Four rows of
W share each load of x; the dot products are reductions LLVM vectorises (fastmath reassoc). With a
batch of one the op streams W once and is bound by memory bandwidth, so packing W into GEMM panels
(which would also double its memory) buys nothing.
"""

from __future__ import annotations

import numpy as np

from ._jit import inline, kernel, prange
from .act import apply_act


@inline
def _gemv_rows(w, x, bias, y, K, m0, m1, code, p, q):
    """y[m] = act(bias[m] + dot(w[m*K:(m+1)*K], x)) for m in [m0, m1); four rows share each x load."""
    m = m0
    while m + 4 <= m1:
        r0 = w[m * K:(m + 1) * K]
        r1 = w[(m + 1) * K:(m + 2) * K]
        r2 = w[(m + 2) * K:(m + 3) * K]
        r3 = w[(m + 3) * K:(m + 4) * K]
        s0 = s1 = s2 = s3 = np.float32(0.0)
        for k in range(K):
            v = x[k]
            s0 += r0[k] * v
            s1 += r1[k] * v
            s2 += r2[k] * v
            s3 += r3[k] * v
        y[m] = apply_act(s0 + bias[m], code, p, q)
        y[m + 1] = apply_act(s1 + bias[m + 1], code, p, q)
        y[m + 2] = apply_act(s2 + bias[m + 2], code, p, q)
        y[m + 3] = apply_act(s3 + bias[m + 3], code, p, q)
        m += 4
    for mm in range(m, m1):
        r = w[mm * K:(mm + 1) * K]
        s = np.float32(0.0)
        for k in range(K):
            s += r[k] * x[k]
        y[mm] = apply_act(s + bias[mm], code, p, q)


@kernel
def f32_gemv(w, x, bias, y, rows, K, code, p, q):
    """y[r*M + m] = act(bias[m] + W[m, :] . x[r*K:(r+1)*K]) for each of ``rows`` vectors x (FC with a
    small batch, matrix @ vector). W: [M, K] row-major (no packing), M = y.size // rows; bias: [M]."""
    M = y.size // rows
    for r in range(rows):
        _gemv_rows(w, x[r * K:(r + 1) * K], bias, y[r * M:(r + 1) * M], K, 0, M, code, p, q)


@kernel(parallel=True)
def f32_gemv_mt(w, x, bias, y, rows, K, code, p, q, chunks):
    """``f32_gemv`` with the rows of W split into ``chunks`` parallel chunks (multiples of 4)."""
    M = y.size // rows
    per = ((M + chunks - 1) // chunks + 3) // 4 * 4
    for r in range(rows):
        xr = x[r * K:(r + 1) * K]
        yr = y[r * M:(r + 1) * M]
        for c in prange(chunks):
            _gemv_rows(w, xr, bias, yr, K, min(M, c * per), min(M, (c + 1) * per), code, p, q)
