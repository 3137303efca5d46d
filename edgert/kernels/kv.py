"""Discrete key-value bottleneck kernels: project, nearest key per head, fetch (and pool) the values.

Layouts (all C-contiguous):

* ``z``: [N, D] queries (one sample or position per row).
* ``proj_t``: [D, C*dk], the projection P[c, d, u] packed as proj_t[d, c*dk + u], so the projection
  is one vectorised axpy per input feature. Without a projection (split by chunk) ``qidx`` [C*dk]
  maps each query column to its feature in z.
* ``keys``: [C, dk, M], keys packed structure-of-arrays: dk = 14 is too short to vectorise a dot
  product over, so the scan runs 14 FMAs over all M keys at once (M is contiguous).
* ``knorm``: [C, M], |K_cj|^2 for the Euclidean metrics (zeros for ``dot``).
* ``values``: [C, M, dv] f32, or fp16 bits (uint16) with ``f16``: only C rows per sample are read,
  so they stay in the (memory-mapped) file at half size.

Per head c the kernel ranks e_j = knorm[c, j] - 2 q.k_j (sqeuclidean/euclidean; same order as
|q - k_j|^2) or e_j = -q.k_j (dot), smallest first, ties to the lower key index (ONNX ArgMin /
TopK). ``dist`` receives |q - k|^2 (clamped at 0), its square root, or q.k per metric.
``combine``: NONE writes out[n, c, t, :]; VOTE sums the top-k values and averages over heads
(the paper's voting decoder); MEAN averages over heads and top-k slots.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import inline, kernel, prange
from .codebook import _half

SQEUCLIDEAN, EUCLIDEAN, DOT = range(3)
METRICS = {"sqeuclidean": SQEUCLIDEAN, "euclidean": EUCLIDEAN, "dot": DOT}
NONE, VOTE, MEAN = range(3)
COMBINES = {"none": NONE, "vote": VOTE, "mean_codebooks": MEAN}


@inline
def _project(z, proj_t, qidx, use_proj, q, nchunk):
    """q[n, col] = z[n] . proj_t[:, col] (or z[n, qidx[col]]), columns split over ``nchunk`` threads."""
    N, D = z.shape
    W = q.shape[1]
    for ch in prange(nchunk):
        lo, hi = ch * W // nchunk, (ch + 1) * W // nchunk
        for n in range(N):
            qr = q[n, lo:hi]
            if use_proj:
                for col in range(hi - lo):
                    qr[col] = 0.0
            else:
                for col in range(hi - lo):
                    qr[col] = z[n, qidx[lo + col]]
        if use_proj:
            for d in range(D):
                pr = proj_t[d, lo:hi]
                for n in range(N):
                    zv = z[n, d]
                    qr = q[n, lo:hi]
                    for col in range(hi - lo):
                        qr[col] += zv * pr[col]


@kernel
def _tile_scores(q, n, c, keys, knorm, metric, j0, acc):
    """acc[j] = e_{j0+j} for head c, query row n and the acc.size keys from j0 (module docstring)."""
    T, dk = acc.size, keys.shape[1]
    kn = knorm[c, j0:j0 + T]
    for j in range(T):
        acc[j] = kn[j]
    f = np.float32(-2.0) if metric != DOT else np.float32(-1.0)
    for u in range(dk):
        qu = q[n, c * dk + u] * f
        kr = keys[c, u, j0:j0 + T]
        for j in range(T):
            acc[j] += qu * kr[j]


@kernel
def _merge(acc, j0, bs, bi):
    """Fold one tile (keys j0..) into the running k smallest (bs ascending, ties to the lower index).

    Tiles arrive in increasing j0, so an equal score from a later tile never displaces an earlier
    key. NaN ranks as +inf. k = 1 takes a vectorised min, then the first index holding it.
    """
    k = bs.size
    if k == 1:
        m = np.float32(np.inf)
        for j in range(acc.size):
            m = min(m, acc[j])
        if m < bs[0]:
            for j in range(acc.size):
                if acc[j] == m:
                    bs[0] = m
                    bi[0] = j0 + j
                    break
        return
    for j in range(acc.size):
        e = acc[j]
        if e != e:  # noqa: PLR0124  (NaN)
            e = np.inf
        if e < bs[k - 1] or (e == bs[k - 1] and j0 + j < bi[k - 1]):
            p = k - 1
            while p > 0 and (bs[p - 1] > e or (bs[p - 1] == e and bi[p - 1] > j0 + j)):
                bs[p] = bs[p - 1]
                bi[p] = bi[p - 1]
                p -= 1
            bs[p] = e
            bi[p] = j0 + j


@inline
def _distance(e, qn, metric):
    if metric == DOT:
        return -e
    d2 = max(e + qn, np.float32(0.0))
    return d2 if metric == SQEUCLIDEAN else np.float32(math.sqrt(d2))


@inline
def _lookup(q, keys, knorm, metric, ids, ids_log, dist, acc, top_s, top_i, nchunk):
    """ids[n, c, :] / dist[n, c, :] for every query row and head; heads split over ``nchunk`` threads.

    Keys are visited in tiles of acc.shape[1] (dk x tile floats stay in L1 while every query row
    is scored against them), each tile folded into the rows' running top-k in top_s/top_i.
    """
    N = q.shape[0]
    C, dk, M = keys.shape
    T = acc.shape[1]
    topk = ids.shape[2]
    for ch in prange(nchunk):
        for c in range(ch * C // nchunk, (ch + 1) * C // nchunk):
            for n in range(N):
                for t in range(topk):
                    top_s[ch, n, t] = np.inf
                    top_i[ch, n, t] = 0 if topk == 1 else M
            for j0 in range(0, M, T):
                a = acc[ch, :min(T, M - j0)]
                for n in range(N):
                    _tile_scores(q, n, c, keys, knorm, metric, j0, a)
                    _merge(a, j0, top_s[ch, n], top_i[ch, n])
            for n in range(N):
                qn = np.float32(0.0)
                for u in range(dk):
                    qn += q[n, c * dk + u] * q[n, c * dk + u]
                for t in range(topk):
                    ids[n, c, t] = top_i[ch, n, t]
                    ids_log[n, c, t] = top_i[ch, n, t]
                    dist[n, c, t] = _distance(top_s[ch, n, t], qn, metric)


@inline
def _combine(values, f16, ids, combine, out):
    """Fetch the selected value rows (fp16 bits widened when ``f16``) and pool them per ``combine``."""
    N, C, topk = ids.shape
    dv = values.shape[2]
    for n in prange(N):
        if combine == NONE:
            for c in range(C):
                for t in range(topk):
                    row = values[c, ids[n, c, t]]
                    o = out[n, (c * topk + t) * dv:(c * topk + t + 1) * dv]
                    if f16:
                        for v in range(dv):
                            o[v] = _half(row[v])
                    else:
                        for v in range(dv):
                            o[v] = row[v]
        else:
            o = out[n]
            for v in range(dv):
                o[v] = 0.0
            for c in range(C):
                for t in range(topk):
                    row = values[c, ids[n, c, t]]
                    if f16:
                        for v in range(dv):
                            o[v] += _half(row[v])
                    else:
                        for v in range(dv):
                            o[v] += row[v]
            f = np.float32(1.0 / C) if combine == VOTE else np.float32(1.0 / (C * topk))
            for v in range(dv):
                o[v] *= f


@kernel
def f32_kv_lookup(z, proj_t, qidx, use_proj, keys, knorm, values, f16, metric, combine, out, ids, ids_log, dist,
                  q, acc, top_s, top_i, nchunk):
    """Discrete key-value bottleneck (layouts in the module docstring).

    values: f32 [C, M, dv], or uint16 fp16 bits with ``f16``. out: [N, C*topk*dv] (combine NONE) or
    [N, dv]. ids/ids_log: [N, C, topk] int64; dist: [N, C, topk] f32. Scratch: q [N, C*dk],
    acc [nchunk, tile] f32, top_s/top_i [nchunk, N, topk] (running top-k per row).
    """
    _project(z, proj_t, qidx, use_proj, q, nchunk)
    _lookup(q, keys, knorm, metric, ids, ids_log, dist, acc, top_s, top_i, nchunk)
    _combine(values, f16, ids, combine, out)


@kernel(parallel=True)
def f32_kv_lookup_mt(z, proj_t, qidx, use_proj, keys, knorm, values, f16, metric, combine, out, ids, ids_log, dist,
                     q, acc, top_s, top_i, nchunk):
    """``f32_kv_lookup`` over threads: projection columns, then heads, then samples."""
    _project(z, proj_t, qidx, use_proj, q, nchunk)
    _lookup(q, keys, knorm, metric, ids, ids_log, dist, acc, top_s, top_i, nchunk)
    _combine(values, f16, ids, combine, out)
