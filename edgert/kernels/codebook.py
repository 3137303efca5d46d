"""Codebook-feature kernels: LayerNorm, and the fused snap (LayerNorm -> score -> running top-k -> mean of codes).

Layouts (all C-contiguous):

* ``x``, ``y``: [N, G*dg], one token per row, group g in columns [g*dg, (g+1)*dg).
* ``cb``: [G, K, dg], one code per contiguous row; f32, or fp16 passed as its uint16 bits
  (``*_f16`` kernels decode one tile of codes at a time into f32 scratch, so memory traffic halves).
* ``scale``, ``bias``: [G, K]; the score of code j is ``dot(h, c_j) * scale[g, j] + bias[g, j]``,
  precomputed in prepare per metric: inner_product (1/|c_j|, 0), euclidean (1, -|c_j|^2 / 2),
  dot (1, 0). Larger is better for all three.

The scan never materialises the [N, K] score matrix: codes are visited in tiles (kept in cache
while every token is scored against them) and each score goes through a k-slot sorted insertion
buffer. Ties resolve to the lower code index (ONNX TopK's rule), and the slot order is by
descending score then ascending index. NaN scores rank as -inf. With more threads than groups,
each group's codes are split into ``nchunks`` ranges scanned in parallel and merged afterwards.

Interventions are runtime data (``ctrl``, ``override``, ``mask``, ``mask_rows``), so changing them
never re-prepares: ``ctrl`` = [override on, disable on, keep_k, bypass]; ``override[n, g, s]`` is
-2 (keep), -1 (block: zero vector, still counted in /k) or a code to force into slot s;
``mask[g, j] != 0`` disables code j for the tokens with ``mask_rows[n] != 0``, before top-k when
keep_k (it leaves the ranking) or after it otherwise (a selected disabled code becomes a blocked
slot); bypass makes the layer the identity (ids -1).
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import inline, kernel, prange

# Positions in the ``ctrl`` array.
CTRL_OVERRIDE, CTRL_DISABLE, CTRL_KEEP_K, CTRL_BYPASS = range(4)


@kernel
def _layernorm_row(xr, hr, gamma, beta, eps, use_ln):
    """hr = LN(xr) * gamma + beta (biased variance, float64 moments), or a copy without LN."""
    n = xr.size
    if not use_ln:
        for d in range(n):
            hr[d] = xr[d]
        return
    m = 0.0
    for d in range(n):
        m += xr[d]
    m /= n
    v = 0.0
    for d in range(n):
        t = xr[d] - m
        v += t * t
    inv = 1.0 / math.sqrt(v / n + eps)
    for d in range(n):
        hr[d] = np.float32((xr[d] - m) * inv) * gamma[d] + beta[d]


@kernel
def f32_layernorm_rows(x, gamma, beta, out, eps):
    """out[n] = (x[n] - mean) / sqrt(var + eps) * gamma + beta over the last axis.

    x, out: [N, d]; gamma, beta: [d]. Moments in float64 (biased variance, as ONNX).
    """
    for n in range(x.shape[0]):
        _layernorm_row(x[n], out[n], gamma, beta, eps, True)


@kernel
def _scores(h, col, n0, nb, codes, scale, bias, out):
    """out[q, j] = dot(h[n0+q, col:col+dg], codes[j]) * scale[j] + bias[j] for q < nb (nb <= 4).

    Four tokens share each code load (the code row streams once per four dot products).
    """
    dg = codes.shape[1]
    if nb == 4:
        h0 = h[n0, col:col + dg]
        h1 = h[n0 + 1, col:col + dg]
        h2 = h[n0 + 2, col:col + dg]
        h3 = h[n0 + 3, col:col + dg]
        for j in range(codes.shape[0]):
            c = codes[j]
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            for d in range(dg):
                v = c[d]
                a0 += h0[d] * v
                a1 += h1[d] * v
                a2 += h2[d] * v
                a3 += h3[d] * v
            out[0, j] = a0 * scale[j] + bias[j]
            out[1, j] = a1 * scale[j] + bias[j]
            out[2, j] = a2 * scale[j] + bias[j]
            out[3, j] = a3 * scale[j] + bias[j]
        return
    for q in range(nb):
        hr = h[n0 + q, col:col + dg]
        for j in range(codes.shape[0]):
            c = codes[j]
            acc = np.float32(0.0)
            for d in range(dg):
                acc += hr[d] * c[d]
            out[q, j] = acc * scale[j] + bias[j]


@inline
def _insert(bs, bi, s, j):
    """Insert (s, j) into the sorted buffer if it beats the last slot (score desc, index asc)."""
    last = bs.size - 1
    if s > bs[last] or (s == bs[last] and j < bi[last]):
        p = last
        while p > 0 and (bs[p - 1] < s or (bs[p - 1] == s and bi[p - 1] > j)):
            bs[p] = bs[p - 1]
            bi[p] = bi[p - 1]
            p -= 1
        bs[p] = s
        bi[p] = j


@kernel
def _scan(ts, count, base, maskg, use_mask, bs, bi):
    """Feed ``count`` tile scores (codes base..base+count-1) through the top-k buffer (bs, bi)."""
    last = bs.size - 1
    for t in range(count):
        s = ts[t]
        j = base + t
        if s != s:  # noqa: PLR0124  (NaN)
            s = -np.inf
        if use_mask and maskg[j] != 0:
            s = -np.inf
        # Fast reject: within a chunk every buffered index is lower than j, so only a strictly
        # greater score (or a still-empty sentinel slot) can enter.
        if s > bs[last] or (s == bs[last] and j < bi[last]):
            _insert(bs, bi, s, j)


@kernel
def _reset(top_s, top_i, ch, r0, count, sentinel):
    for r in range(r0, r0 + count):
        for s in range(top_s.shape[2]):
            top_s[ch, r, s] = -np.inf
            top_i[ch, r, s] = sentinel


@kernel
def _select(top_s, top_i, r, n, g, nchunks, ctrl, override, mask, mask_rows, ids, ids_log):
    """Merge the chunk buffers of row r into chunk 0's, apply the interventions, write ids."""
    bs, bi = top_s[0, r], top_i[0, r]
    for ch in range(1, nchunks):
        for s in range(bs.size):
            _insert(bs, bi, top_s[ch, r, s], top_i[ch, r, s])
    block_disabled = ctrl[CTRL_DISABLE] != 0 and ctrl[CTRL_KEEP_K] == 0 and mask_rows[n] != 0
    for s in range(bs.size):
        c = bi[s]
        if block_disabled and mask[g, c] != 0:
            c = -1
        if ctrl[CTRL_OVERRIDE] != 0:
            o = override[n, g, s]
            if o >= -1:
                c = o
        ids[n, g, s] = c
        ids_log[n, g, s] = c


@kernel
def _bypass(x, y, ids, ids_log):
    for n in range(x.shape[0]):
        for d in range(x.shape[1]):
            y[n, d] = x[n, d]
    for n in range(ids.shape[0]):
        for g in range(ids.shape[1]):
            for s in range(ids.shape[2]):
                ids[n, g, s] = -1
                ids_log[n, g, s] = -1


@kernel
def _decode_f16(src, dst, bits):
    """dst[i] = float(half bits src[i]) for finite halves (bits is a uint32 view of dst).

    The half's sign, exponent and mantissa are shifted into f32 position (exponent bias still 15),
    then one multiply by 2^112 re-biases normals and turns subnormal halves into the exact f32
    values. Both loops vectorise. Inf/NaN halves would come out finite: prepare sends codebooks
    holding them to the widened-f32 kernel instead.
    """
    for i in range(src.size):
        u = np.uint32(src[i])
        bits[i] = ((u & np.uint32(0x7FFF)) << np.uint32(13)) | ((u & np.uint32(0x8000)) << np.uint32(16))
    for i in range(dst.size):
        dst[i] *= np.float32(5.192296858534828e+33)  # 2**112


@inline
def _half(u):
    """One fp16 value from its bits, exactly (scalar path for the final gather)."""
    u = np.uint32(u)
    e = (u >> np.uint32(10)) & np.uint32(31)
    m = u & np.uint32(0x3FF)
    if e == np.uint32(0):
        v = np.float32(m) * np.float32(5.9604644775390625e-08)
    elif e == np.uint32(31):
        v = np.float32(np.inf) if m == np.uint32(0) else np.float32(np.nan)
    else:
        v = np.float32(math.ldexp(1024.0 + np.float64(m), np.int64(e) - 25))
    return -v if (u & np.uint32(0x8000)) != np.uint32(0) else v


@inline
def _normalise(x, h, gamma, beta, eps, use_ln, G, dg):
    for n in prange(x.shape[0]):
        for g in range(G):
            _layernorm_row(x[n, g * dg:(g + 1) * dg], h[n, g * dg:(g + 1) * dg], gamma[g], beta[g], eps, use_ln)


@inline
def _tile_scan(codes, g, t0, h, scale, bias, use_disable, mask, mask_rows, top_s, top_i, ch, ts):
    """Score one tile of codes (rows t0.. of group g) against every token, four at a time."""
    N = h.shape[0]
    G, dg = mask.shape[0], codes.shape[1]
    count = codes.shape[0]
    for n0 in range(0, N, 4):
        nb = min(4, N - n0)
        _scores(h, g * dg, n0, nb, codes, scale[g, t0:t0 + count], bias[g, t0:t0 + count], ts)
        for q in range(nb):
            r = (n0 + q) * G + g
            _scan(ts[q], count, t0, mask[g], use_disable and mask_rows[n0 + q] != 0, top_s[ch, r], top_i[ch, r])


@inline
def _scan_f32(cb, h, scale, bias, ctrl, mask, mask_rows, top_s, top_i, tile_s, nchunks, tile):
    G, K = cb.shape[0], cb.shape[1]
    use_disable = ctrl[CTRL_DISABLE] != 0 and ctrl[CTRL_KEEP_K] != 0
    for item in prange(G * nchunks):
        g, ch = item // nchunks, item % nchunks
        lo, hi = ch * K // nchunks, (ch + 1) * K // nchunks
        for n in range(h.shape[0]):
            _reset(top_s, top_i, ch, n * G + g, 1, K)
        for t0 in range(lo, hi, tile):
            t1 = min(t0 + tile, hi)
            _tile_scan(cb[g, t0:t1], g, t0, h, scale, bias, use_disable, mask, mask_rows, top_s, top_i, ch,
                       tile_s[item])


@inline
def _scan_f16(cb, h, scale, bias, ctrl, mask, mask_rows, top_s, top_i, tile_s, tile_f, nchunks, tile):
    G, K, dg = cb.shape
    use_disable = ctrl[CTRL_DISABLE] != 0 and ctrl[CTRL_KEEP_K] != 0
    for item in prange(G * nchunks):
        g, ch = item // nchunks, item % nchunks
        lo, hi = ch * K // nchunks, (ch + 1) * K // nchunks
        buf = tile_f[item]
        for n in range(h.shape[0]):
            _reset(top_s, top_i, ch, n * G + g, 1, K)
        for t0 in range(lo, hi, tile):
            t1 = min(t0 + tile, hi)
            flat = buf[:(t1 - t0) * dg]
            _decode_f16(cb[g, t0:t1].reshape(-1), flat, flat.view(np.uint32))
            _tile_scan(flat.reshape(t1 - t0, dg), g, t0, h, scale, bias, use_disable, mask, mask_rows, top_s, top_i,
                       ch, tile_s[item])


@inline
def _finish(cb, f16, y, top_s, top_i, nchunks, ctrl, override, mask, mask_rows, ids, ids_log, out_mul):
    """Per (token, group): merge the chunks, apply interventions, write ids and the mean of the codes."""
    G, dg = cb.shape[0], cb.shape[2]
    for r in prange(y.shape[0] * G):
        n, g = r // G, r % G
        _select(top_s, top_i, r, n, g, nchunks, ctrl, override, mask, mask_rows, ids, ids_log)
        yr = y[n, g * dg:(g + 1) * dg]
        for d in range(dg):
            yr[d] = 0.0
        for s in range(ids.shape[2]):
            c = ids[n, g, s]
            if c >= 0:
                code = cb[g, c]
                if f16:
                    for d in range(dg):
                        yr[d] += _half(code[d])
                else:
                    for d in range(dg):
                        yr[d] += code[d]
        for d in range(dg):
            yr[d] *= out_mul


# The serial and the threaded (_mt) kernel of each storage type share every line through the helpers
# above; only the decorator differs. Helpers holding a prange are inlined (so the threaded kernel
# parallelises them); the leaf helpers are ordinary compiled functions: compiled once and shared,
# they cut a cold compile of the family by about a third at the same speed.
@kernel
def f32_codebook_snap(x, cb, scale, bias, gamma, beta, eps, use_ln, out_mul, ctrl, override, mask, mask_rows,
                      y, ids, ids_log, h, top_s, top_i, tile_s, nchunks, tile):
    """Codebook snap with an f32 codebook ``cb`` [G, K, dg] (layouts in the module docstring).

    Scratch: h [N, G*dg] f32 (normalised queries); top_s/top_i [nchunks, N*G, k] (running top-k per
    code range); tile_s [G*nchunks, 4, tile] f32 (one tile's scores for four tokens).
    Preconditions: k <= K, nchunks <= K, forced codes in ``override`` < K (checked where set).
    """
    if ctrl[CTRL_BYPASS] != 0:
        _bypass(x, y, ids, ids_log)
        return
    _normalise(x, h, gamma, beta, eps, use_ln, cb.shape[0], cb.shape[2])
    _scan_f32(cb, h, scale, bias, ctrl, mask, mask_rows, top_s, top_i, tile_s, nchunks, tile)
    _finish(cb, False, y, top_s, top_i, nchunks, ctrl, override, mask, mask_rows, ids, ids_log, out_mul)


@kernel(parallel=True)
def f32_codebook_snap_mt(x, cb, scale, bias, gamma, beta, eps, use_ln, out_mul, ctrl, override, mask, mask_rows,
                         y, ids, ids_log, h, top_s, top_i, tile_s, nchunks, tile):
    """``f32_codebook_snap`` over threads: tokens, then (group, code range) items, then rows."""
    if ctrl[CTRL_BYPASS] != 0:
        _bypass(x, y, ids, ids_log)
        return
    _normalise(x, h, gamma, beta, eps, use_ln, cb.shape[0], cb.shape[2])
    _scan_f32(cb, h, scale, bias, ctrl, mask, mask_rows, top_s, top_i, tile_s, nchunks, tile)
    _finish(cb, False, y, top_s, top_i, nchunks, ctrl, override, mask, mask_rows, ids, ids_log, out_mul)


@kernel
def f32_codebook_snap_f16(x, cb, scale, bias, gamma, beta, eps, use_ln, out_mul, ctrl, override, mask, mask_rows,
                          y, ids, ids_log, h, top_s, top_i, tile_s, tile_f, nchunks, tile):
    """``f32_codebook_snap`` with the codebook stored as fp16 bits (``cb`` uint16 [G, K, dg]).

    Extra scratch: tile_f [G*nchunks, tile*dg] f32 (one decoded tile per work item). Arithmetic is
    f32 on the exactly widened codes: results equal the f32 kernel on ``cb.astype(f32)``.
    """
    if ctrl[CTRL_BYPASS] != 0:
        _bypass(x, y, ids, ids_log)
        return
    _normalise(x, h, gamma, beta, eps, use_ln, cb.shape[0], cb.shape[2])
    _scan_f16(cb, h, scale, bias, ctrl, mask, mask_rows, top_s, top_i, tile_s, tile_f, nchunks, tile)
    _finish(cb, True, y, top_s, top_i, nchunks, ctrl, override, mask, mask_rows, ids, ids_log, out_mul)


@kernel(parallel=True)
def f32_codebook_snap_f16_mt(x, cb, scale, bias, gamma, beta, eps, use_ln, out_mul, ctrl, override, mask,
                             mask_rows, y, ids, ids_log, h, top_s, top_i, tile_s, tile_f, nchunks, tile):
    """``f32_codebook_snap_f16`` over threads."""
    if ctrl[CTRL_BYPASS] != 0:
        _bypass(x, y, ids, ids_log)
        return
    _normalise(x, h, gamma, beta, eps, use_ln, cb.shape[0], cb.shape[2])
    _scan_f16(cb, h, scale, bias, ctrl, mask, mask_rows, top_s, top_i, tile_s, tile_f, nchunks, tile)
    _finish(cb, True, y, top_s, top_i, nchunks, ctrl, override, mask, mask_rows, ids, ids_log, out_mul)
