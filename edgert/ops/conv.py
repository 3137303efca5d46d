"""Convolution ops over NCHW: Conv and ConvTranspose (ONNX semantics with explicit pads, fused activation).

Kernel choice (``prepare``):

* depthwise (group == C > 1, or a single channel in and out), 3x3 and 5x5 at stride 1 or 2 without
  dilation (any pads): ``f32_dwconv_grid`` (the output plane as one flat run of vectors) at stride 2
  and for rows narrower than two vectors, else ``f32_dwconv_direct`` (row pairs; see ``dw_grid``);
  ``f32_dwconv_generic`` for everything else;
* 1x1, stride 1, no pads: ``f32_gemm_rows``, a GEMM straight on the input planes;
* small K = C/g*kh*kw (a stem: 3x3 over 3 channels) at stride 1 or 2 with long output rows:
  ``f32_conv_rows``, the GEMM micro-kernel reading padded input rows in place (no gather);
* anything else (any kernel, stride, pads, dilation, groups): ``f32_gemm_im2col``, the same GEMM with
  its B panels gathered from the input on the fly (no im2col buffer);
* ConvTranspose: ``f32_convtranspose_col2im``, a GEMM into a per-image ``cols`` scratch, then col2im.

``_mt`` variants run over ``ctx.threads`` workers when the node has at least PARALLEL_MIN_MACS
multiply-adds: a parallel region costs ~4 us when numba's workers are still spinning from the
previous one (back-to-back kernels) and tens of microseconds when they have gone to sleep, while
1M multiply-adds take ~10-20 us on one core, so smaller nodes run faster serially.
"""

from __future__ import annotations

import numpy as np

from ..kernels import conv as KC
from ..kernels import dwconv as KD
from ..kernels import gemm as KG
from ..kernels import gemm_res as KR
from ..kernels import gemm_t as KT
from ..kernels import gemv as KV
from ..kernels import spmm as KS
from ..kernels.act import act_args, reference_act
from ..kernels.work import work_counter
from .common import ACT_ATTRS, check_activation, flat
from .conv_blocked import prepare_blocked
from .registry import OpDef, Prepared, Sequence, register
from .shape import int_attr, int_list

PARALLEL_MIN_MACS = 1_000_000
# Depthwise kernels do 8-20x fewer multiply-adds per microsecond than the GEMM (a 3x3 tap per pixel
# instead of a register tile), so the same launch cost is paid back by a tenth of the work: a 7x7 or
# 14x14 depthwise layer of 400-700k multiply-adds takes 50-100 us on one core.
DW_PARALLEL_MIN_MACS = 100_000
# Depthwise at stride 1 on planes of at most this many pixels: channels in the vector lanes
# (f32_dwconv_cvec). Measured against the flat-grid kernel (1 thread, AVX-512): 0.66-0.83x the time
# on 6x6 and 7x7 planes (3x3 and 5x5), but 1.2-2x on 12x12 and larger, where transposing the
# planes in and out costs more than the idle lanes of the grid.
CVEC_MAX_PIXELS = 49
# Direct convolution on rows beat im2col + GEMM on every shape measured (K = 27 to 2304: stems,
# 3x3 at 16-256 channels; 0.46-0.89x the time, tools/bench_kernels.py and BENCHMARKS.md), so the
# limit is the largest K measured rather than the 64 first assumed.
ROWS_MAX_K = 2304  # direct convolution on rows when K = C/g*kh*kw is at most this ...
# Measured: rows still won with a third of the last panel wasted (OW 24 and 48 at NR 32: 0.64-0.87x)
# and lost from about one half (OW 16: 1.05x, OW 14: 1.2x, OW 8: 1.6x).
ROWS_MAX_WASTE = 0.4  # ... and at most this fraction of each output row's last panel is padding
_DUMMY = np.zeros(1, np.float32)  # stands in for an absent bias or an unused operand


TRANSPOSED_GAIN = 1.15  # the transposed 1x1 GEMM when it computes this much less padding (see below)


def transposed_better(P: int, M: int, NR: int = KG.NR, MR: int = KG.MR) -> bool:
    """1x1 conv over P pixels to M channels: the transposed GEMM (pixels as tile rows, channels as
    panel columns) when the normal one's padding (P rounded up to panels of NR) exceeds the
    transposed one's (M rounded up to NR, P to tiles of MR; single rows when fewer than 4 are left)
    by TRANSPOSED_GAIN, which pays for its transposed stores."""
    normal = -(-P // NR) * NR / P
    tail = P % MR
    rows = P - tail + (MR if tail >= 4 else tail)
    return normal > TRANSPOSED_GAIN * (-(-M // NR) * NR / M) * (rows / P)


def dw_grid(OW: int, stride: int, VW: int = KD.VW) -> bool:
    """Depthwise 3x3/5x5: the flat-grid kernel instead of the row kernel. Measured on AVX-512
    (tools/bench_kernels.py and a direct comparison of the two kernels): the grid takes 0.53-0.67x
    the time at stride 2 (7x7 to 56x56 outputs) and 0.7-0.9x at stride 1 on rows narrower than two
    vectors (6 to 24 wide); from 28 wide on, the row kernel (two output rows share their input rows)
    is level or faster (1.2-1.5x the grid's time at 48-96)."""
    return stride == 2 or OW < 2 * VW


def writable(a: np.ndarray) -> np.ndarray:
    """Kernels take writable arrays (one numba type); constants arrive as read-only maps: copy those."""
    return a if a.flags.writeable else np.array(a)


def conv_output_size(n, k, s, p0, p1, d) -> int:
    return (n + p0 + p1 - ((k - 1) * d + 1)) // s + 1


def _geometry_attrs(opdef, node, attrs):
    strides = int_list(opdef, node, attrs, "strides", 2, 1)
    pads = int_list(opdef, node, attrs, "pads", 4, 0)
    dilations = int_list(opdef, node, attrs, "dilations", 2, 1)
    group = int_attr(opdef, node, attrs, "group", 1)
    return strides, pads, dilations, group


def _check_tensors(opdef, node, ins, bias_len):
    x, w = ins[0], ins[1]
    for t, what in ((x, "input"), (w, "weight")):
        if t.dtype != "f32":
            raise opdef.error(node, f"{what} must be f32, got {t.dtype}")
        if len(t.shape) != 4:
            raise opdef.error(node, f"{what} must be 4-d, got {list(t.shape)}")
    if len(ins) > 2 and ins[2] is not None:
        b = ins[2]
        if b.dtype != "f32" or tuple(b.shape) != (bias_len,):
            raise opdef.error(node, f"bias must be f32 [{bias_len}], got {b.dtype} {list(b.shape)}")


def gemv_prepared(M, rows, K, T, act, weight_of, bias_of, packed, reason) -> Prepared:
    """``rows`` matrix-vector products y = act(W[M, K] x + bias) (Conv heads, small-batch FC): the
    serial kernel, or W's rows in chunks of 4 over T threads. ``weight_of``/``bias_of`` map the
    node's input views to the arrays to pass (a constant, or a graph input)."""
    chunks = min(4 * T, max(1, M // 4))
    name = "f32_gemv" + ("_mt" if T > 1 and chunks > 1 else "")
    extra = (chunks,) if name.endswith("_mt") else ()
    return Prepared(name, getattr(KV, name),
                    lambda i, o, s: (weight_of(i), flat(writable(i[0])), bias_of(i), flat(o[0]), rows, K, *act, *extra),
                    packed=packed, reason=reason)


def _weights(ctx, node, ins, index):
    """(array, is_const) for input ``index``: the constant as a writable f32 array (read-only maps are
    copied, so kernels see one array type), or None when the graph computes it."""
    name = node.inputs[index] if len(node.inputs) > index else ""
    if not name:
        return None, True
    if not ctx.is_const(name):
        return None, False
    return writable(np.ascontiguousarray(ctx.const(name), np.float32)), True


def _workers(ctx, macs, parallel_items, min_macs=PARALLEL_MIN_MACS):
    """Number of workers: the session's threads for enough work, else 1 (a serial kernel)."""
    return ctx.threads if ctx.threads > 1 and macs >= min_macs and parallel_items > 1 else 1


@register
class Conv(OpDef):
    name = "Conv"
    family = "conv"
    attrs = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1, **ACT_ATTRS}
    num_inputs = (2, 4)  # X, W, B?, R? (R: a residual fused by the fuse_conv_add pass, added before ACT)
    kernels = ("f32_dwconv_direct", "f32_dwconv_direct_mt", "f32_dwconv_grid", "f32_dwconv_grid_mt",
               "f32_dwconv_cvec", "f32_dwconv_cvec_mt",
               "f32_dwconv_generic", "f32_dwconv_generic_mt",
               "f32_gemm_rows", "f32_gemm_rows_mt", "f32_gemm_t", "f32_gemm_t_mt", "f32_gemm_im2col",
               "f32_gemm_im2col_mt", "f32_conv_rows", "f32_conv_rows_mt", "f32_gemv", "f32_gemv_mt",
               "f32_gemm_rows_res", "f32_gemm_rows_res_mt",
               "f32_blocked_conv1x1", "f32_blocked_conv1x1_mt", "f32_blocked_dwconv", "f32_blocked_dwconv_mt",
               "f32_blocked_conv", "f32_blocked_conv_mt")

    def infer(self, node, attrs, ins, ctx):
        check_activation(self, node, attrs)
        strides, pads, dilations, group = _geometry_attrs(self, node, attrs)
        _check_tensors(self, node, ins, ins[1].shape[0] if len(ins[1].shape) == 4 else 0)
        N, C, H, W = ins[0].shape
        M, Cg, kh, kw = ins[1].shape
        if min(M, Cg, kh, kw) < 1:
            raise self.error(node, f"weight shape {list(ins[1].shape)} has an empty dim")
        if C % group:
            raise self.error(node, f"group {group} does not divide the {C} input channels")
        if M % group:
            raise self.error(node, f"group {group} does not divide the {M} output channels")
        if Cg * group != C:
            raise self.error(node, f"weight expects {Cg * group} input channels ({Cg} per group x {group} "
                                   f"groups), the input has {C}")
        OH = conv_output_size(H, kh, strides[0], pads[0], pads[2], dilations[0])
        OW = conv_output_size(W, kw, strides[1], pads[1], pads[3], dilations[1])
        if OH < 1 or OW < 1:
            raise self.error(node, f"output size {OH}x{OW} is empty: kernel {kh}x{kw} (dilations {dilations}) "
                                   f"does not fit the padded input {H}x{W} (pads {pads})")
        if len(ins) > 3 and ins[3] is not None and (tuple(ins[3].shape) != (N, M, OH, OW) or ins[3].dtype != "f32"):
            raise self.error(node, f"residual {ins[3].dtype} {list(ins[3].shape)} must match the output "
                                   f"f32 {[N, M, OH, OW]}")
        return [((N, M, OH, OW), "f32")]

    def reference(self, attrs, x, w, b=None, r=None):
        (sh, sw), (pt, pl, pb, pr), (dh, dw), group = attrs["strides"], attrs["pads"], attrs["dilations"], \
            attrs["group"]
        N, _, H, W = x.shape
        M, Cg, kh, kw = w.shape
        OH = conv_output_size(H, kh, sh, pt, pb, dh)
        OW = conv_output_size(W, kw, sw, pl, pr, dw)
        xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        y = np.zeros((N, M, OH, OW))
        Mg = M // group
        for gi in range(group):
            xs = xp[:, gi * Cg:(gi + 1) * Cg]
            ws = w[gi * Mg:(gi + 1) * Mg].astype(np.float64)
            for ki in range(kh):
                for kj in range(kw):
                    patch = xs[:, :, ki * dh:ki * dh + (OH - 1) * sh + 1:sh, kj * dw:kj * dw + (OW - 1) * sw + 1:sw]
                    y[:, gi * Mg:(gi + 1) * Mg] += np.einsum("nchw,mc->nmhw", patch, ws[:, :, ki, kj])
        if b is not None:
            y += b.astype(np.float64)[None, :, None, None]
        if r is not None:
            y += r.astype(np.float64)
        return (reference_act(y, attrs["activation"], attrs["act_a"], attrs["act_b"]).astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        if ctx.is_blocked(node.outputs[0]):  # the planner keeps this region channel-blocked
            return prepare_blocked(self, node, attrs, ins, outs, ctx, PARALLEL_MIN_MACS, DW_PARALLEL_MIN_MACS)
        if len(ins) > 3 and ins[3] is not None:
            return self._residual(node, attrs, ins, outs, ctx)
        return self._prepare(node, attrs, ins, outs, ctx)

    def _residual(self, node, attrs, ins, outs, ctx):
        """Y = ACT(conv + B + R). A 1x1 stride-1 conv with constant weights adds R to each GEMM work
        item's output while it is in cache (``f32_gemm_rows_res``: 0.84-0.99x the time of conv + Add
        from 14x14 to 64x64); any other conv (and 1x1 on planes small enough for ``f32_gemm_t``)
        runs without activation, then one pass adds R and applies it (``f32_add_act``)."""
        M, Cg, kh, kw = ins[1].shape
        plain = {**attrs, "activation": "none", "act_a": 0.0, "act_b": 0.0}
        pointwise = (kh == kw == 1 and attrs["strides"] == [1, 1] and not any(attrs["pads"])
                     and attrs["group"] == 1 and ctx.is_const(node.inputs[1]) and ins[0].shape[1] == Cg
                     and (len(node.inputs) < 3 or not node.inputs[2] or ctx.is_const(node.inputs[2])))
        if pointwise:
            N, _, H, W = ins[0].shape
            # Small planes keep the transposed GEMM (its gain is larger than a pass over a small R).
            if not (N == 1 and (H, W) == (1, 1)) and not transposed_better(H * W, M):
                return self._gemm(node, attrs, ins[:3], outs, ctx, outs[0].size * Cg, residual=True)
        inner = self._prepare(node, plain, ins[:3], outs, ctx)
        base_bind, code = inner.bind, act_args(attrs)
        inner.fn = Sequence(inner.fn, KS.f32_add_act)  # not a closure: each call resolves to AOT/JIT
        inner.bind = lambda i, o, s: (base_bind(i[:3], o, s), (flat(o[0]), flat(i[3]), flat(o[0]), *code))
        inner.kernel += "+f32_add_act"
        inner.reason += "; then the fused residual Add and the activation in one pass"
        return inner

    def _prepare(self, node, attrs, ins, outs, ctx):
        G, C = attrs["group"], ins[0].shape[1]
        M, Cg, kh, kw = ins[1].shape
        macs = outs[0].size * Cg * kh * kw
        if G == C and Cg == 1 and (G > 1 or M == 1):
            return self._depthwise(node, attrs, ins, outs, ctx, macs)
        N, _, H, W = ins[0].shape
        if (G == 1 and N == 1 and (kh, kw) == (H, W) and not any(attrs["pads"]) and ctx.is_const(node.inputs[1])
                and (len(node.inputs) < 3 or not node.inputs[2] or ctx.is_const(node.inputs[2]))):
            return self._whole_input(node, attrs, ins, outs, ctx, macs)
        return self._gemm(node, attrs, ins, outs, ctx, macs)

    def _whole_input(self, node, attrs, ins, outs, ctx, macs):
        """A kernel as large as its input (a classifier head written as a conv) is a matrix-vector
        product: the weight [M, C, H, W] flattened is W[M, C*H*W] and the input in NCHW order is the
        vector. The im2col GEMM would pack a single column (measured 2.8 GFLOP/s)."""
        M, Cg, kh, kw = ins[1].shape
        w, _ = _weights(ctx, node, ins, 1)
        b, _ = _weights(ctx, node, ins, 2)
        K = Cg * kh * kw
        packed = {"weight": flat(w), "bias": flat(b) if b is not None else np.zeros(M, np.float32)}
        T = _workers(ctx, macs, M // 4)
        return gemv_prepared(M, 1, K, T, act_args(attrs), lambda i: packed["weight"], lambda i: packed["bias"],
                             packed, f"{kh}x{kw} kernel covers the whole input: one matrix-vector product "
                                     f"W {M}x{K}, {T} thread{'s' if T > 1 else ''}")

    def _depthwise(self, node, attrs, ins, outs, ctx, macs):
        (sh, sw), (pt, pl, _, _), (dh, dw), _ = attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"]
        N, C, H, W = ins[0].shape
        M, _, kh, kw = ins[1].shape
        OH, OW = outs[0].shape[2:]
        g = KD.geometry(N * M, M // C, H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw)
        w, w_const = _weights(ctx, node, ins, 1)
        b, b_const = _weights(ctx, node, ins, 2)
        packed = {"geometry": g}
        if w_const:
            packed["weight"] = flat(w)
        if b_const:
            packed["bias"] = flat(b) if b is not None else np.zeros(M, np.float32)
        direct = kh == kw and kh in (3, 5) and sh == sw and sh in (1, 2) and dh == dw == 1
        if direct and sh == 1 and M == C and OH * OW <= CVEC_MAX_PIXELS and w_const and b_const:
            return self._depthwise_cvec(node, attrs, ins, outs, ctx, macs, w, b)
        grid = direct and dw_grid(OW, sh)
        base = "f32_dwconv_grid" if grid else ("f32_dwconv_direct" if direct else "f32_dwconv_generic")
        what = f"{kh}x{kw} stride {sh}x{sw}" + (f" dilation {dh}x{dw}" if dh * dw > 1 else "")
        what += (" (flat output grid, taps in registers)" if grid else
                 " (padded rows, taps in registers)" if direct else " (through padded phase planes)")
        T = min(_workers(ctx, macs, N * M, DW_PARALLEL_MIN_MACS), N * M)
        name = base + ("_mt" if T > 1 else "")
        act = act_args(attrs)
        mt = (work_counter(T),) if T > 1 else ()

        def bind(i, o, s):
            weight = packed["weight"] if "weight" in packed else flat(i[1])
            bias = packed["bias"] if "bias" in packed else flat(i[2])
            return (flat(writable(i[0])), weight, bias, flat(o[0]), g, s[0], *act, *mt)

        mult = f", channel multiplier {M // C}" if M != C else ""
        per_worker = (KD.grid_layout(OH, OW, kh, sh)[3] if grid else
                      KD.rows_scratch_floats(OH, OW, kh, sh) if direct else KD.scratch_floats(g))
        return Prepared(name, getattr(KD, name), bind, scratch=[((T, per_worker), "f32")], packed=packed,
                        writes_bands=T > 1, reason=f"depthwise {what}, {N * M} planes of {OH}x{OW}{mult}, "
                               f"{T} thread{'s' if T > 1 else ''}")

    def _depthwise_cvec(self, node, attrs, ins, outs, ctx, macs, w, b):
        """Small planes at stride 1: VW channels per vector (the planes transposed in and out)."""
        (pt, pl, _, _) = attrs["pads"]
        N, C, H, W = ins[0].shape
        _, _, k, _ = ins[1].shape
        OH, OW = outs[0].shape[2:]
        g = KD.geometry(C, 1, H, W, OH, OW, k, k, 1, 1, pt, pl, 1, 1)  # D_PLANES holds the channel count
        wp, bp = KD.pack_cvec(w.reshape(C, k * k), b.reshape(-1) if b is not None else np.zeros(C, np.float32))
        blocks = N * -(-C // KD.VW)
        T = min(_workers(ctx, macs, blocks, DW_PARALLEL_MIN_MACS), blocks)
        name = "f32_dwconv_cvec" + ("_mt" if T > 1 else "")
        act = act_args(attrs)
        return Prepared(name, getattr(KD, name), lambda i, o, s: (flat(writable(i[0])), wp, bp, flat(o[0]), g, s[0], *act),
                        scratch=[((T, KD.cvec_layout(H, W, OH, OW, k, k, 1, 1, pt, pl)[2]), "f32")],
                        packed={"weight": wp, "bias": bp, "geometry": g},
                        reason=f"depthwise {k}x{k} stride 1 on {OH}x{OW} planes: {KD.VW} channels per vector, "
                               f"{C} channels, {T} thread{'s' if T > 1 else ''}")

    def _gemm(self, node, attrs, ins, outs, ctx, macs, residual=False):
        (sh, sw), (pt, pl, pb, pr), (dh, dw), G = attrs["strides"], attrs["pads"], attrs["dilations"], \
            attrs["group"]
        N, C, H, W = ins[0].shape
        M, Cg, kh, kw = ins[1].shape
        OH, OW = outs[0].shape[2:]
        Mg, K, npix = M // G, Cg * kh * kw, OH * OW
        pointwise = kh == kw == 1 and sh == sw == 1 and pt == pl == pb == pr == 0
        w, w_const = _weights(ctx, node, ins, 1)
        b, b_const = _weights(ctx, node, ins, 2)
        # Direct convolution on rows: small K (the im2col gather would cost as much as the FMAs) and
        # output rows that fill whole panels (at most ROWS_MAX_WASTE of the last one is padding).
        if pointwise and G == 1 and w_const and not residual and transposed_better(npix, Mg):
            return self._gemm_t(node, attrs, ins, outs, ctx, macs, w, b)
        rows = (not pointwise and w_const and K <= ROWS_MAX_K and sw in (1, 2)
                and -(-OW // KG.NR) * KG.NR <= OW * (1 + ROWS_MAX_WASTE))
        T, chunks, pg = KG.work_split(_workers(ctx, macs, 2), N * G, Mg, npix, K)
        if rows:  # items are output rows; chunk the row blocks only when there are too few rows
            chunks, pg = (1 if N * G * OH >= 4 * T else min(-(-Mg // KG.MR), 4 * T)), 1
        fields = dict(m=Mg, n=npix, k=K, nimg=N, ngrp=G, mchunks=chunks, pgroup=pg, a_gs=KG.packed_a_floats(Mg, K),
                      b_is=C * H * W, b_gs=Cg * H * W, ldb=H * W, y_is=M * npix, y_gs=Mg * npix, ldy=npix,
                      bias_gs=Mg, bias_mode=KG.BIAS_ROW if len(ins) > 2 and ins[2] is not None else KG.BIAS_NONE)
        if not pointwise:
            fields.update(im_c=Cg, im_h=H, im_w=W, im_ow=OW, im_kh=kh, im_kw=kw, im_sh=sh, im_sw=sw,
                          im_pt=pt, im_pl=pl, im_dh=dh, im_dw=dw)
        koff = None
        if rows:
            RW, taps = KC.rows_layout(OW, kw, sw, dw)
            koff = [((c * kh + ki) * sw + taps[kj][0]) * RW + taps[kj][1]
                    for c in range(Cg) for ki in range(kh) for kj in range(kw)]
            fields["ldb"] = RW
            scratch = [((T, KG.MR * KG.NR + Cg * kh * sw * RW), "f32")]
        else:
            scratch = [((T, KG.scratch_floats(K, pg)), "f32")]
        packed = {}
        if w_const:
            packed["weight"] = KG.pack_a(w.reshape(G, Mg, K))
        else:
            # Weights computed by the graph: packed into scratch by the kernel on every run.
            fields.update(ap_nimg=1, ap_ngrp=G, ap_sgs=Mg * K, ap_lda=K)
            scratch.append(((G * KG.packed_a_floats(Mg, K),), "f32"))
        if b_const and b is not None:
            packed["bias"] = flat(b)
        g = KG.geometry(koff, **fields)
        packed["geometry"] = g
        base = "f32_gemm_rows" if pointwise else ("f32_conv_rows" if rows else "f32_gemm_im2col")
        name = base + ("_mt" if T > 1 else "")
        act = act_args(attrs)
        if residual:  # the caller checked: pointwise, group 1, constant weights
            name = "f32_gemm_rows_res" + ("_mt" if T > 1 else "")
            bias = packed.get("bias", _DUMMY)
            return Prepared(name, getattr(KR, name),
                            lambda i, o, s: (packed["weight"], flat(writable(i[0])), bias, flat(o[0]), flat(i[3]), g,
                                             s[0], *act),
                            scratch=scratch, packed=packed,
                            reason=f"1x1 stride 1: GEMM {Mg}x{K} @ {K}x{npix}, residual Add fused (added per work "
                                   f"item while in cache), {T} thread{'s' if T > 1 else ''}")

        def bind(i, o, s):
            a, asrc = (packed["weight"], _DUMMY) if w_const else (flat(s[1]), flat(i[1]))
            if "bias" in packed:
                bias = packed["bias"]
            else:
                bias = flat(i[2]) if len(i) > 2 and i[2] is not None else _DUMMY
            return (a, asrc, flat(writable(i[0])), bias, flat(o[0]), g, s[0], *act)

        what = "1x1 stride 1" if pointwise else f"{kh}x{kw} stride {sh}x{sw} dilation {dh}x{dw}" + \
            (" direct on padded rows" if rows else " im2col")
        groups = f", {G} groups" if G > 1 else ""
        return Prepared(name, getattr(KC if rows else KG, name), bind, scratch=scratch, packed=packed,
                        reason=f"{what}: GEMM {Mg}x{K} @ {K}x{npix}{groups}{f', batch {N}' if N > 1 else ''}, "
                               f"{T} thread{'s' if T > 1 else ''}"
                               + ("" if w_const else "; weights are computed, packed every run"))


    def _gemm_t(self, node, attrs, ins, outs, ctx, macs, w, b):
        """1x1 stride 1 on a small plane: C^T = X^T @ W^T, the output channels as panel columns."""
        N, C, H, W = ins[0].shape
        M, K = ins[1].shape[:2]  # K < C when Conv3D reads a window of the input's channels
        P = H * W
        npan = -(-M // KG.NR)
        T = _workers(ctx, macs, N * npan * -(-P // KG.MR))
        bias = np.zeros(npan * KG.NR, np.float32)
        if b is not None:
            bias[:M] = b.reshape(-1)
        g = KG.geometry(m=P, n=M, k=K, nimg=N, b_is=C * P, ldb=P, y_is=M * P, ldy=P, bias_mode=KG.BIAS_COL)
        packed = {"weight": KG.pack_b(np.ascontiguousarray(w.reshape(M, K).T)), "bias": bias, "geometry": g}
        name = "f32_gemm_t" + ("_mt" if T > 1 else "")
        act = act_args(attrs)
        return Prepared(name, getattr(KT, name),
                        lambda i, o, s: (flat(s[1]), packed["weight"], flat(writable(i[0])), bias, flat(o[0]), g,
                                         s[0], *act),
                        scratch=[((T, KT.scratch_floats()), "f32"), ((KT.packed_x_floats(P, K, N),), "f32")],
                        packed=packed,
                        reason=f"1x1 stride 1 on a {H}x{W} plane: transposed GEMM {P}x{K} @ {K}x{M} (channels as "
                               f"panel columns), {T} thread{'s' if T > 1 else ''}")


@register
class ConvTranspose(OpDef):
    name = "ConvTranspose"
    family = "conv"
    attrs = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1, "output_padding": [0, 0],
             **ACT_ATTRS}
    num_inputs = (2, 3)
    kernels = ("f32_convtranspose_col2im", "f32_convtranspose_col2im_mt", "f32_convtranspose_blocks",
               "f32_convtranspose_blocks_mt", "np_convtranspose")

    def _blocks(self, node, attrs, ins, outs, ctx, w, b, macs):
        """Kernel == stride: each input pixel writes its own output block (no overlap, no col2im)."""
        N, C, H, W = ins[0].shape
        _, M, kh, kw = ins[1].shape
        OH, OW = outs[0].shape[2:]
        T = _workers(ctx, macs, N * M * H * kh)
        ct = np.array([N, C, H, W, M, OH, OW, kh, kw, kh, kw, 0, 0, 1, 1, 1], np.int64)
        packed = {"weight": flat(w), "bias": flat(b) if b is not None else _DUMMY, "geometry": ct}
        name = "f32_convtranspose_blocks" + ("_mt" if T > 1 else "")
        act = act_args(attrs)
        return Prepared(name, getattr(KC, name),
                        lambda i, o, s: (flat(writable(i[0])), packed["weight"], packed["bias"], flat(o[0]), ct, s[0],
                                         *act),
                        scratch=[((T, 2 * kw * W), "f32")], packed=packed,
                        reason=f"{kh}x{kw} stride {kh}x{kw}: every input pixel owns one output block (channel sums, "
                               f"no col2im); {T} thread{'s' if T > 1 else ''}")

    @staticmethod
    def output_size(n, k, s, p0, p1, d, op) -> int:
        return s * (n - 1) + op + d * (k - 1) + 1 - p0 - p1

    def infer(self, node, attrs, ins, ctx):
        check_activation(self, node, attrs)
        strides, pads, dilations, group = _geometry_attrs(self, node, attrs)
        out_pad = int_list(self, node, attrs, "output_padding", 2, 0)
        w_shape = ins[1].shape
        _check_tensors(self, node, ins, w_shape[1] * group if len(w_shape) == 4 else 0)
        N, C, H, W = ins[0].shape
        Cw, Mg, kh, kw = w_shape
        if min(Cw, Mg, kh, kw) < 1:
            raise self.error(node, f"weight shape {list(w_shape)} has an empty dim")
        if C % group:
            raise self.error(node, f"group {group} does not divide the {C} input channels")
        if Cw != C:
            raise self.error(node, f"weight is for {Cw} input channels, the input has {C}")
        for d in range(2):
            if out_pad[d] >= max(strides[d], dilations[d]):
                raise self.error(node, f"output_padding {out_pad} must be smaller than the stride or the dilation")
        OH = self.output_size(H, kh, strides[0], pads[0], pads[2], dilations[0], out_pad[0])
        OW = self.output_size(W, kw, strides[1], pads[1], pads[3], dilations[1], out_pad[1])
        if OH < 1 or OW < 1:
            raise self.error(node, f"output size {OH}x{OW} is empty (pads {pads} crop more than the "
                                   f"{OH + pads[0] + pads[2]}x{OW + pads[1] + pads[3]} full output)")
        return [((N, Mg * group, OH, OW), "f32")]

    def reference(self, attrs, x, w, b=None):
        (sh, sw), (pt, pl, pb, pr), (dh, dw), group = attrs["strides"], attrs["pads"], attrs["dilations"], \
            attrs["group"]
        oph, opw = attrs["output_padding"]
        N, C, H, W = x.shape
        _, Mg, kh, kw = w.shape
        Cg = C // group
        # Scatter into the full (uncropped) output, then crop the pads.
        FH, FW = sh * (H - 1) + dh * (kh - 1) + 1 + oph, sw * (W - 1) + dw * (kw - 1) + 1 + opw
        full = np.zeros((N, Mg * group, FH, FW))
        xd = x.astype(np.float64)
        for gi in range(group):
            xs = xd[:, gi * Cg:(gi + 1) * Cg]
            ws = w[gi * Cg:(gi + 1) * Cg].astype(np.float64)
            for ki in range(kh):
                for kj in range(kw):
                    contrib = np.einsum("nchw,cm->nmhw", xs, ws[:, :, ki, kj])
                    full[:, gi * Mg:(gi + 1) * Mg, ki * dh:ki * dh + sh * (H - 1) + 1:sh,
                         kj * dw:kj * dw + sw * (W - 1) + 1:sw] += contrib
        y = full[:, :, pt:FH - pb, pl:FW - pr]
        if b is not None:
            y = y + b.astype(np.float64)[None, :, None, None]
        return (reference_act(y, attrs["activation"], attrs["act_a"], attrs["act_b"]).astype(x.dtype),)

    def prepare(self, node, attrs, ins, outs, ctx):
        (sh, sw), (pt, pl, _, _), (dh, dw), G = attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"]
        N, C, H, W = ins[0].shape
        _, Mg, kh, kw = ins[1].shape
        M, OH, OW = outs[0].shape[1:]
        w, w_const = _weights(ctx, node, ins, 1)
        b, b_const = _weights(ctx, node, ins, 2)
        act = act_args(attrs)
        if not (w_const and b_const):
            opdef = self

            def run(x, wt, bias, out):
                out[...] = opdef.reference(attrs, x, wt, bias)[0]

            return Prepared("np_convtranspose", run,
                            lambda i, o, s: (i[0], i[1], i[2] if len(i) > 2 else None, o[0]),
                            reason="weights or bias are computed by the graph: numpy reference (slow)")
        Cg, R, npix = C // G, Mg * kh * kw, H * W
        macs = N * C * npix * R
        # Kernel == stride with at most one GEMM row block (R <= MR: selfie_segmentation's 16 -> 1 mask
        # upsampler has R = 4, half of every tile empty): the direct per-block kernel.
        if (kh, kw) == (sh, sw) and G == 1 and not any(attrs["pads"]) and (dh, dw) == (1, 1) \
                and (OH, OW) == (H * sh, W * sw) and R <= KG.MR:
            return self._blocks(node, attrs, ins, outs, ctx, w, b, macs)
        T, chunks, pg = KG.work_split(_workers(ctx, macs, 2), G, R, npix, Cg)
        # A for group g is its weights [C/g, R] transposed: [R, C/g].
        a = KG.pack_a(np.swapaxes(w.reshape(G, Cg, R), 1, 2))
        g = KG.geometry(m=R, n=npix, k=Cg, ngrp=G, mchunks=chunks, pgroup=pg, a_gs=KG.packed_a_floats(R, Cg),
                        b_gs=Cg * npix, ldb=npix, y_gs=R * npix, ldy=npix, bias_mode=KG.BIAS_NONE)
        ct = np.array([N, C, H, W, M, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw, G], np.int64)
        packed = {"weight": a, "geometry": g, "col2im": ct}
        packed["bias"] = flat(b) if b is not None else _DUMMY
        name = "f32_convtranspose_col2im" + ("_mt" if T > 1 else "")
        return Prepared(name, getattr(KC, name),
                        lambda i, o, s: (a, flat(writable(i[0])), packed["bias"], flat(o[0]), g, ct, flat(s[1]),
                                         s[0], *act),
                        scratch=[((T, KG.scratch_floats(Cg, pg)), "f32"), ((G * R * npix,), "f32")], packed=packed,
                        reason=f"{kh}x{kw} stride {sh}x{sw}: GEMM {R}x{Cg} @ {Cg}x{npix} per group and image "
                               f"({G} group{'s' if G > 1 else ''}), then col2im; {T} thread{'s' if T > 1 else ''}")
