"""SparseConv1x1: a 1x1 convolution or fully connected layer whose weights are stored in CSR form.

Layout: edgert's activations are NCHW already, so a 1x1 convolution is ``Y[M, P] = W[M, K] X[K, P]``
with P = H*W: exactly the channel-major sparse x dense product of "Fast Sparse ConvNets" (Elsen et
al.) with no transpose anywhere. A fully connected layer X [N, K] is the same with P = 1 per row.

Weights: ``values`` (f32, may be stored fp16), ``cols`` (u16 when K <= 65536, else i32: the first
input channel of each nonzero block), ``rowptr`` (i32, M/bm + 1 entries: block row r owns blocks
rowptr[r]..rowptr[r+1]), bias separate, and an optional residual R of the output's shape (a fused Add:
Y = act(W X + b + R)). ``block`` = [bm, bk]: each stored block covers bm output
channels x bk consecutive input channels, values row-major inside the block ([1, 1]: plain CSR).

Kernel choice (``prepare``): a cost model estimates both kernels' time on this machine (or the
board profile's throughputs) and picks the faster; ``options["sparse"]`` ("auto", "always"/"on",
"never"/"off"), ``options["sparse_nodes"]`` ({node name: mode}) or, for the CLI's ``--sparse``,
the ``EDGERT_SPARSE`` environment variable override it.

* ``f32_spmm_rows`` / ``_mt``: the CSR kernel (edgert/kernels/spmm.py); blocks are expanded to
  plain CSR rows at prepare (the kernel has no block-specialised form yet);
* dense: the weights are densified once at prepare and the node runs through Conv's 1x1 GEMM
  (``f32_gemm_rows``) or FullyConnected's kernels, exactly as an unpruned layer would.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np

from ..ir.graph import Node, TensorInfo
from ..kernels import spmm as KS
from ..kernels.act import act_args, reference_act
from ..kernels.work import work_counter
from .common import ACT_ATTRS, check_activation, flat
from .conv import PARALLEL_MIN_MACS, writable
from .registry import OpDef, PrepareContext, Prepared, Sequence, get_op, register

# Cost model defaults, per thread, fitted by tools/calibrate_sparse.py on the x86-64 host (1 thread,
# the 1x1 shapes of MobileNetV2 and the MediaPipe detectors at 70-95% random sparsity; the fit picks
# the faster kernel in 99 of 100 cases). Dense: edgert's 1x1 GEMM, with a per-output cost that makes
# thin layers (K = 16..32) slower than their FLOPs say. Sparse: the CSR kernel's useful work, plus a
# per-nonzero cost when a row ends in a partial register tile (7x7 layers; P = 1, fully connected
# layers, where the dense matrix-vector product usually wins) and a per-row, per-tile cost.
DENSE_GFLOPS = 72.6
DENSE_OUT_NS = 0.118
SPARSE_GFLOPS = 38.6
SPARSE_NZ_NS = 0.956
SPARSE_ROW_NS = 12.7
MODES = {"auto": "auto", "always": "always", "on": "always", "never": "never", "off": "never"}
_NO_RES = np.zeros(1, np.float32)  # stands in for an absent residual
BLOCKS = ((1, 1), (1, 4), (2, 1), (4, 1), (1, 2), (2, 2), (4, 4))


def densify(values, cols, rowptr, M, K, block=(1, 1)) -> np.ndarray:
    """The dense W [M, K] (f32) of CSR/BSR arrays (no validation: see ``check_csr``)."""
    bm, bk = block
    w = np.zeros((M, K), np.float32)
    v = np.asarray(values, np.float32).reshape(-1, bm, bk)
    c = np.asarray(cols, np.int64)
    rp = np.asarray(rowptr, np.int64)
    for r in range(len(rp) - 1):
        for j in range(rp[r], rp[r + 1]):
            w[r * bm:(r + 1) * bm, c[j]:c[j] + bk] = v[j]
    return w


def to_csr(w: np.ndarray, block=(1, 1)):
    """(values f32, cols u16/i32, rowptr i32) of W [M, K] in blocks of bm x bk (a block is stored
    when any of its weights is nonzero). M and K must be multiples of the block."""
    bm, bk = block
    M, K = w.shape
    blocks = w.reshape(M // bm, bm, K // bk, bk).transpose(0, 2, 1, 3)  # [M/bm, K/bk, bm, bk]
    keep = np.any(blocks != 0, axis=(2, 3))
    rows, bcols = np.nonzero(keep)
    rowptr = np.zeros(M // bm + 1, np.int32)
    np.cumsum(np.bincount(rows, minlength=M // bm), out=rowptr[1:])
    cols = (bcols * bk).astype(np.uint16 if K <= 65536 else np.int32)
    values = np.ascontiguousarray(blocks[rows, bcols], np.float32).reshape(-1)
    return values, cols, rowptr


def sparse_cost(ctx) -> tuple:
    """(dense GFLOP/s, sparse useful GFLOP/s, where they come from) for this session."""
    board = ctx.options.get("board")
    cost = getattr(board, "sparse", None)
    if cost is not None:
        return cost.dense_gflops, cost.sparse_useful_gflops, f"board {board.id}"
    return DENSE_GFLOPS, SPARSE_GFLOPS, "host calibration"


def estimate_us(M, K, P, nnz, nimg, dense_gflops, sparse_gflops) -> tuple:
    """(dense, sparse) time estimates in microseconds for one call (per thread)."""
    dense = 2.0 * M * K * P * nimg / (dense_gflops * 1e3) + DENSE_OUT_NS * 1e-3 * M * P * nimg
    tiles = -(-P // KS.TILE)
    sparse = (2.0 * nnz * P * nimg / (sparse_gflops * 1e3) + SPARSE_ROW_NS * 1e-3 * M * tiles * nimg
              + (SPARSE_NZ_NS * 1e-3 * nnz * nimg if P % KS.TILE else 0.0))
    return dense, sparse


def sparse_mode(ctx, node) -> str:
    per_node = (ctx.options.get("sparse_nodes") or {}).get(node.name)
    mode = per_node or ctx.options.get("sparse") or os.environ.get("EDGERT_SPARSE") or "auto"
    if mode not in MODES:
        from ..errors import InputError
        raise InputError(f"sparse mode {mode!r} is not one of {', '.join(MODES)}", node=node.name, op=node.op)
    return MODES[mode]


class _DenseContext(PrepareContext):
    """The session's context with the densified weight as one more constant, for Conv/FC's prepare."""

    def __init__(self, ctx, extra: dict):
        consts = dict(ctx.graph.consts)
        consts.update(extra)
        super().__init__(SimpleNamespace(consts=consts), threads=ctx.threads, file=ctx.file, options=ctx.options)
        self._outer, self._extra = ctx, extra

    def const(self, name, dtype=np.float32):
        return self._extra[name] if name in self._extra else self._outer.const(name, dtype)


@register
class SparseConv1x1(OpDef):
    name = "SparseConv1x1"
    family = "conv"
    attrs = {"block": [1, 1], **ACT_ATTRS}
    num_inputs = (4, 6)
    inplace = 5  # the fused residual: each output tile is read from it, then written over it
    kernels = ("f32_spmm_rows", "f32_spmm_rows_mt", "f32_gemm_rows", "f32_gemm_rows_mt", "f32_gemm_t", "f32_gemm_t_mt",
               "f32_gemv", "f32_gemv_mt", "f32_gemm_prepacked", "f32_gemm_prepacked_mt")

    def _block(self, node, attrs):
        block = attrs["block"]
        if (not isinstance(block, (list, tuple)) or len(block) != 2
                or not all(isinstance(v, int) and v >= 1 for v in block)):
            raise self.error(node, f"block must be two positive ints [bm, bk], got {block!r}")
        return int(block[0]), int(block[1])

    def infer(self, node, attrs, ins, ctx):
        check_activation(self, node, attrs)
        bm, bk = self._block(node, attrs)
        x, values, cols, rowptr = ins[:4]
        bias = ins[4] if len(ins) > 4 else None
        res = ins[5] if len(ins) > 5 else None
        if x.dtype != "f32" or len(x.shape) not in (2, 4):
            raise self.error(node, f"input must be f32 [N, C, H, W] or [N, K], got {x.dtype} {list(x.shape)}")
        for t, what, dtypes in ((values, "values", ("f32",)), (cols, "cols", ("u16", "i32")),
                                (rowptr, "rowptr", ("i32",))):
            if t.dtype not in dtypes or len(t.shape) != 1:
                raise self.error(node, f"{what} must be 1-d {'/'.join(dtypes)}, got {t.dtype} {list(t.shape)}")
        nblocks = cols.shape[0]
        if values.shape[0] != nblocks * bm * bk:
            raise self.error(node, f"values has {values.shape[0]} entries; {nblocks} blocks of {bm}x{bk} "
                                   f"need {nblocks * bm * bk}")
        if rowptr.shape[0] < 2:
            raise self.error(node, "rowptr needs at least 2 entries (one block row)")
        M, K = (rowptr.shape[0] - 1) * bm, x.shape[1]
        if K % bk:
            raise self.error(node, f"block width {bk} does not divide the {K} input channels")
        if bias is not None and (bias.dtype != "f32" or tuple(bias.shape) != (M,)):
            raise self.error(node, f"bias must be f32 [{M}], got {bias.dtype} {list(bias.shape)}")
        shape = (x.shape[0], M) + tuple(x.shape[2:])
        if res is not None and (res.dtype != "f32" or tuple(res.shape) != shape):
            raise self.error(node, f"residual must be f32 {list(shape)} (the output), got {res.dtype} {list(res.shape)}")
        return [(shape, "f32")]

    def reference(self, attrs, x, values, cols, rowptr, bias=None, residual=None):
        block = tuple(attrs["block"])
        M, K = (len(rowptr) - 1) * block[0], x.shape[1]
        w = densify(values, cols, rowptr, M, K, block).astype(np.float64)
        xs = x.astype(np.float64)
        y = np.einsum("mk,nk...->nm...", w, xs)
        if bias is not None:
            y = y + bias.astype(np.float64).reshape((1, M) + (1,) * (x.ndim - 2))
        if residual is not None:
            y = y + residual.astype(np.float64)
        return (reference_act(y, attrs["activation"], attrs["act_a"], attrs["act_b"]).astype(x.dtype),)

    def check_csr(self, node, values, cols, rowptr, M, K, block, file=None):
        """The CSR arrays must describe blocks inside W [M, K] (a damaged file must not index out)."""
        bk = block[1]
        rp = rowptr.astype(np.int64)
        if rp[0] != 0 or np.any(np.diff(rp) < 0) or rp[-1] != len(cols):
            raise self.error(node, f"rowptr must rise from 0 to {len(cols)} (the number of blocks)", file=file)
        c = cols.astype(np.int64)
        if len(c) and (c.min() < 0 or c.max() + bk > K or np.any(c % bk)):
            raise self.error(node, f"cols must be multiples of {bk} below {K - bk + 1}", file=file)
        row = np.repeat(np.arange(len(rp) - 1), np.diff(rp))
        if len(c) > 1 and np.any((row[1:] == row[:-1]) & (np.diff(c) <= 0)):
            raise self.error(node, "cols must rise strictly within each row (no duplicates)", file=file)

    def prepare(self, node, attrs, ins, outs, ctx):
        block = self._block(node, attrs)
        for i, what in ((1, "values"), (2, "cols"), (3, "rowptr")):
            if not ctx.is_const(node.inputs[i]):
                raise self.error(node, f"{what} must be a constant", file=ctx.file)
        has_bias = len(node.inputs) > 4 and bool(node.inputs[4])
        if has_bias and not ctx.is_const(node.inputs[4]):
            raise self.error(node, "bias must be a constant", file=ctx.file)
        values = np.asarray(ctx.const(node.inputs[1]), np.float32)
        cols = np.asarray(ctx.graph.consts[node.inputs[2]])
        rowptr = np.asarray(ctx.graph.consts[node.inputs[3]])
        x = ins[0]
        N, K = x.shape[:2]
        M = outs[0].shape[1]
        P = int(np.prod(x.shape[2:], dtype=np.int64))
        self.check_csr(node, values, cols, rowptr, M, K, block, file=ctx.file)
        w = densify(values, cols, rowptr, M, K, block)
        nnz = int(np.count_nonzero(w))
        dense_g, sparse_g, source = sparse_cost(ctx)
        t_dense, t_sparse = estimate_us(M, K, P, nnz, N, dense_g, sparse_g)
        mode = sparse_mode(ctx, node)
        sparsity = 1.0 - nnz / (M * K)
        use_sparse = mode == "always" or (mode == "auto" and t_sparse < t_dense)
        why = (f"sparsity {sparsity:.1%} ({nnz} of {M * K} weights), est. dense {t_dense:.1f} us vs sparse "
               f"{t_sparse:.1f} us ({source})")
        why += {"always": "; sparse forced", "never": "; dense forced"}.get(mode, "")
        bias = np.ascontiguousarray(ctx.const(node.inputs[4]), np.float32) if has_bias else None
        has_res = len(node.inputs) > 5 and bool(node.inputs[5])
        if has_res:
            why += "; residual Add fused"
        if use_sparse:
            return self._sparse(node, attrs, w, bias, has_res, N, M, K, P, ctx, why)
        return self._dense(node, attrs, ins, outs, ctx, w, bias, has_res, why)

    def _sparse(self, node, attrs, w, bias, has_res, N, M, K, P, ctx, why):
        vals, cols, rowptr = to_csr(w)
        offs = cols.astype(np.int64) * P
        offs = offs.astype(np.int32 if K * P < 2 ** 31 else np.int64)
        packed = {"values": vals, "offs": offs, "rowptr": rowptr,
                  "bias": writable(bias) if bias is not None else np.zeros(M, np.float32)}
        T = ctx.threads if ctx.threads > 1 and 2 * len(vals) * P * N >= PARALLEL_MIN_MACS else 1
        pixel_bands = KS.use_pixel_bands(P, M, K, T)
        pc, mc = KS.chunks(P, M, T, pixel_bands)
        name = "f32_spmm_rows" + ("_mt" if T > 1 and pc * mc * N > 1 else "")
        extra = (pc, mc, pixel_bands, work_counter(T)) if name.endswith("_mt") else ()
        act = act_args(attrs)
        return Prepared(name, getattr(KS, name),
                        lambda i, o, s: (flat(writable(i[0])), vals, offs, rowptr, packed["bias"],
                                         flat(i[5]) if has_res else _NO_RES, has_res, flat(o[0]),
                                         N, M, K, P, *act, *extra),
                        packed=packed, shares_input=name.endswith("_mt") and not pixel_bands,
                        reason=f"sparse: {why}; CSR x CHW, {P} pixels, {T} thread{'s' if T > 1 else ''}"
                               + (f", bands of {'pixels' if pixel_bands else 'output channels'}"
                                  if name.endswith("_mt") else ""))

    def _dense(self, node, attrs, ins, outs, ctx, w, bias, has_res, why):
        M, K = w.shape
        wname, bname = f"{node.name}#dense_weight", f"{node.name}#dense_bias"
        extra = {bname: bias} if bias is not None else {}
        # With a fused residual the GEMM writes a scratch buffer (the output may share the residual's
        # bytes), then f32_add_act adds the residual and applies the activation.
        act = {"activation": "none", "act_a": 0.0, "act_b": 0.0} if has_res else {k: attrs[k] for k in ACT_ATTRS}
        if len(ins[0].shape) == 4:
            extra[wname] = w.reshape(M, K, 1, 1)
            shim = Node(node.name, "Conv", [node.inputs[0], wname] + ([bname] if bias is not None else []),
                        node.outputs, {})
            conv_attrs = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1, **act}
            winfo = TensorInfo(wname, (M, K, 1, 1))
            binfo = [TensorInfo(bname, (M,))] if bias is not None else []
            prepared = get_op("Conv").prepare(shim, conv_attrs, [ins[0], winfo] + binfo, outs, _DenseContext(ctx, extra))
        else:
            extra[wname] = w
            shim = Node(node.name, "FullyConnected", [node.inputs[0], wname] + ([bname] if bias is not None else []),
                        node.outputs, {})
            winfo = TensorInfo(wname, (M, K))
            binfo = [TensorInfo(bname, (M,))] if bias is not None else []
            prepared = get_op("FullyConnected").prepare(shim, act, [ins[0], winfo] + binfo, outs, _DenseContext(ctx, extra))
            prepared.packed.setdefault("weight", w)  # densified here: the session keeps it alive
        bind = prepared.bind
        prepared.reason = f"dense: {why}; {prepared.reason}"
        if not has_res:
            prepared.bind = lambda i, o, s: bind(i[:1] + i[4:5], o, s)  # Conv/FC see (X, [bias]) only
            return prepared
        k = len(prepared.scratch)
        prepared.scratch = list(prepared.scratch) + [(tuple(outs[0].shape), "f32")]
        code = act_args(attrs)
        prepared.fn = Sequence(prepared.fn, KS.f32_add_act)
        prepared.bind = lambda i, o, s: (bind(i[:1] + i[4:5], [s[k]], s),
                                         (flat(s[k]), flat(i[5]), flat(o[0]), *code))
        prepared.kernel += "+f32_add_act"
        return prepared
