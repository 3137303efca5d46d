"""Export an edgert IR graph of a float conv net as a .tflite model, so LiteRT can run the very same
weights edgert runs (benchmarks of zoo models and their pruned variants, which have no .tflite).

The IR is NCHW; TFLite is NHWC. Every IR tensor is *held* in one or more layouts: ``nhwc`` (a 4-D
activation as TFLite convolutions want it) or ``plain`` (the IR's own order). Conv-family ops
produce NHWC; an op that needs the other layout gets a TRANSPOSE (or a RESHAPE when only unit dims
move) inserted once per tensor. 4-D graph inputs and outputs are NHWC, as in every TFLite model.

Weights: conv OHWI, depthwise 1HWO (``depth_multiplier`` = out/in channels), fully connected
[out, in]. Explicit pads become SAME or VALID when they select exactly the same windows as TFLite's
rule (``converters.tflite.layout.tf_padding``), otherwise a PAD op before a VALID conv. Fused
activations go into the op's options where TFLite has them (relu, relu6, relu_n1_to_1, tanh) and
become separate ops otherwise (HARD_SWISH, LOGISTIC ...). A node with no TFLite equivalent is a
``ConversionError`` naming it.

    data = export_graph(graph)                          # bytes of the .tflite file
    report = export_tflite("mobilenet_v2.onnx", "mobilenet_v2.tflite")
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import edgert
from edgert.errors import ConversionError
from edgert.fileio import atomic_write

from .tflite.layout import only_moves_unit_dims, tf_padding, transpose_conv_pads
from .tflite_writer import TFLiteModel

NHWC, PLAIN = "nhwc", "plain"
TO_NHWC = (0, 2, 3, 1)  # perm turning an NCHW tensor into NHWC
TO_NCHW = (0, 3, 1, 2)
# TFLite fused activation codes (tflite.ActivationFunctionType).
_FUSED_NONE, _FUSED_RELU, _FUSED_RELU_N1_TO_1, _FUSED_RELU6, _FUSED_TANH = 0, 1, 2, 3, 4


def export_graph(graph, file=None, description=None) -> bytes:
    """The .tflite bytes of ``graph`` (an edgert IR ``Graph``, batch of any size, f32)."""
    return _Exporter(_unfuse_residuals(graph), file,
                     description or f"edgert {edgert.__version__} tflite export").run()


def _unfuse_residuals(graph):
    """A copy of ``graph`` with the residual Adds that edgert's passes fused (Conv's input R,
    ``fuse_conv_add``; PRelu's input R, ``fuse_add_prelu``) written as separate ADD nodes again:
    TFLite has no such fused forms. Returns ``graph`` itself when there are none."""
    import copy

    from edgert.ir.graph import Node, TensorInfo
    fused = [n for n in graph.nodes if (n.op == "Conv" and len(n.inputs) > 3 and n.inputs[3])
             or (n.op == "PRelu" and len(n.inputs) > 2 and n.inputs[2])]
    if not fused:
        return graph
    graph = copy.deepcopy(graph)
    nodes = []
    for node in graph.nodes:
        if node.op == "Conv" and len(node.inputs) > 3 and node.inputs[3]:
            y, r = node.outputs[0], node.inputs[3]
            tmp = _fresh(graph, y + "#conv")
            graph.tensors[tmp] = TensorInfo(tmp, graph.tensors[y].shape, graph.tensors[y].dtype)
            act = {k: node.attrs[k] for k in ("activation", "act_a", "act_b") if k in node.attrs}
            conv = Node(node.name, "Conv", node.inputs[:2] + [b for b in node.inputs[2:3] if b], [tmp],
                        {**node.attrs, "activation": "none", "act_a": 0.0, "act_b": 0.0})
            nodes += [conv, Node(node.name + "#add", "Add", [tmp, r], [y], act)]
        elif node.op == "PRelu" and len(node.inputs) > 2 and node.inputs[2]:
            x, slope, r = node.inputs
            tmp = _fresh(graph, node.outputs[0] + "#sum")
            graph.tensors[tmp] = TensorInfo(tmp, graph.tensors[x].shape, graph.tensors[x].dtype)
            nodes += [Node(node.name + "#add", "Add", [x, r], [tmp]), Node(node.name, "PRelu", [tmp, slope],
                                                                               node.outputs)]
        else:
            nodes.append(node)
    graph.nodes = nodes
    return graph


def _fresh(graph, base):
    name, k = base, 1
    while name in graph.tensors:
        name, k = f"{base}_{k}", k + 1
    return name


@dataclass
class ExportReport:
    source: str
    destination: str
    ir_nodes: int
    tflite_ops: dict  # TFLite op -> count
    file_bytes: int
    note: str = ""

    def summary(self) -> str:
        top = ", ".join(f"{op} {n}" for op, n in sorted(self.tflite_ops.items(), key=lambda kv: -kv[1])[:5])
        text = (f"{self.ir_nodes} edgert nodes -> {sum(self.tflite_ops.values())} TFLite ops ({top}); "
                f"file {self.file_bytes / 1e6:.2f} MB")
        return text + (f"; {self.note}" if self.note else "")


def load_dense_graph(src, input_shapes=None):
    """(graph, note) for ``src``: an .ert file as stored, or an .onnx model (path or ModelProto) through edgert's ONNX
    frontend and the graph passes *except* a sparsify pass (TFLite gets the dense weights either way)."""
    from .onnx import check_model, load_onnx, onnx_to_graph
    from .passes import PASSES, run_passes
    if hasattr(src, "graph") and hasattr(src, "opset_import"):  # an onnx.ModelProto
        check_model(src)
        model, src = src, None
    elif Path(src).suffix.lower() == ".ert":
        from edgert.ir.format import read_ert
        return read_ert(src), ""
    else:
        model = load_onnx(src)
    graph, _ = onnx_to_graph(model, input_shapes, False, None, file=src)
    passes = tuple(p for p in PASSES if "sparsif" not in p.__name__)
    run_passes(graph, file=src, passes=passes)
    note = "sparsify pass skipped" if len(passes) != len(PASSES) else ""
    return graph, note


def export_tflite(src, dst, input_shapes=None) -> ExportReport:
    """Export ``src`` (.onnx or .ert) to ``dst`` (.tflite), written atomically."""
    graph, note = load_dense_graph(src, input_shapes)
    data = export_graph(graph, file=src)
    try:
        with atomic_write(dst) as fh:
            fh.write(data)
    except OSError as exc:
        raise ConversionError(f"cannot write the output file: {exc.strerror or exc}", file=dst) from None
    counts = {}
    from .tflite import read_model
    for op in read_model(data).operators:
        counts[op.opcode] = counts.get(op.opcode, 0) + 1
    return ExportReport(str(src), str(dst), len(graph.nodes), counts, len(data), note)


# --- activations -----------------------------------------------------------------------------------
def fused_code(act, a, b):
    """The TFLite fused-activation code for an IR activation, or None when TFLite has no fused form."""
    if act == "none":
        return _FUSED_NONE
    if act == "relu" or (act == "clip" and a == 0.0 and b == math.inf):
        return _FUSED_RELU
    if act == "clip" and (a, b) == (0.0, 6.0):
        return _FUSED_RELU6
    if act == "clip" and (a, b) == (-1.0, 1.0):
        return _FUSED_RELU_N1_TO_1
    if act == "tanh":
        return _FUSED_TANH
    return None


def _act_of(attrs):
    return attrs.get("activation", "none"), float(attrs.get("act_a", 0.0)), float(attrs.get("act_b", 0.0))


class _Exporter:
    def __init__(self, graph, file, description):
        self.g, self.file = graph, file
        self.m = TFLiteModel(description=description)
        self.held = {}  # (IR tensor, layout) -> TFLite tensor index
        self.native = {}  # IR tensor -> the layout its producer wrote it in
        self.node = None

    # --- errors and shapes -------------------------------------------------------------------
    def error(self, message, hint=None):
        n = self.node
        return ConversionError(f"cannot export to TFLite: {message}", file=self.file, node=n and n.name,
                               op=n and n.op, hint=hint)

    def shape(self, name, layout=PLAIN):
        shape = tuple(self.g.tensors[name].shape)
        return tuple(shape[p] for p in TO_NHWC) if layout == NHWC else shape

    def is_const(self, name):
        return name in self.g.consts

    def const_value(self, name):
        value = self.g.const_value(name)
        return value.astype(np.float32) if value.dtype.kind == "f" else value

    # --- holding tensors in layouts ----------------------------------------------------------
    def new(self, name, layout, suffix=""):
        """A fresh TFLite activation tensor for IR tensor ``name`` in ``layout``."""
        if self.g.tensors[name].dtype != "f32":
            raise self.error(f"tensor '{name}' is {self.g.tensors[name].dtype}; the exporter writes f32 models")
        return self.m.tensor(name + suffix, self.shape(name, layout))

    def produce(self, name, layout, suffix=""):
        """The TFLite tensor an op writes IR tensor ``name`` into (its native layout)."""
        index = self.new(name, layout, suffix)
        self.held[(name, layout)] = index
        self.native[name] = layout
        return index

    def get(self, name, layout):
        """IR tensor ``name`` as a TFLite tensor in ``layout``, inserting a relayout once if needed."""
        if (name, layout) in self.held:
            return self.held[(name, layout)]
        if self.is_const(name):
            value = self.const_value(name)
            if layout == NHWC:
                value = np.transpose(value, TO_NHWC)
            index = self.m.const(name if layout == PLAIN else f"{name}/nhwc", value)
        else:
            src = self.native[name]
            perm = TO_NHWC if layout == NHWC else TO_NCHW
            src_shape = self.shape(name, src)
            index = self.new(name, layout, f"/{layout}")
            self._relayout(self.held[(name, src)], index, src_shape, perm, self.shape(name, layout))
        self.held[(name, layout)] = index
        return index

    def _relayout(self, src, dst, src_shape, perm, dst_shape):
        if only_moves_unit_dims(src_shape, perm):  # the bytes stay in order: a reshape will do
            self.m.op("RESHAPE", [src, self.int_const(dst_shape)], [dst], "ReshapeOptions", NewShape=list(dst_shape))
        else:
            self.m.op("TRANSPOSE", [src, self.int_const(perm)], [dst])

    def get_broadcast(self, name, layout, rank):
        """Operand ``name`` of a broadcasting op of output rank ``rank``, lifted to that rank first."""
        shape = self.shape(name)
        if len(shape) == rank:
            return self.get(name, layout)
        key = (name, f"{layout}@{rank}")
        if key in self.held:
            return self.held[key]
        padded = (1,) * (rank - len(shape)) + shape
        if self.is_const(name):
            value = self.const_value(name).reshape(padded)
            index = self.m.const(f"{name}/r{rank}", np.transpose(value, TO_NHWC) if layout == NHWC else value)
        else:
            src = self.get(name, PLAIN)
            index = self.m.tensor(f"{name}/r{rank}", padded)
            self.m.op("RESHAPE", [src, self.int_const(padded)], [index], "ReshapeOptions", NewShape=list(padded))
            if layout == NHWC:
                lifted = index
                index = self.m.tensor(f"{name}/r{rank}/nhwc", tuple(padded[p] for p in TO_NHWC))
                self._relayout(lifted, index, padded, TO_NHWC, tuple(padded[p] for p in TO_NHWC))
        self.held[key] = index
        return index

    def int_const(self, values):
        return self.m.const(f"const{len(self.m.tensors)}", np.asarray(values, dtype=np.int32))

    def float_const(self, values, name=None):
        return self.m.const(name or f"const{len(self.m.tensors)}", np.asarray(values, dtype=np.float32))

    # --- ops with an optional trailing activation --------------------------------------------
    def emit(self, opcode, inputs, out_name, layout, options_type=None, act=("none", 0.0, 0.0), version=1,
             **options):
        """Append ``opcode`` writing IR tensor ``out_name``; fuse ``act`` into its options when the op has
        a FusedActivationFunction field and TFLite a code for it, else follow it with activation ops."""
        code = fused_code(*act)
        has_field = options_type in _FUSED_OPTIONS
        if act[0] == "none" or (has_field and code is not None):
            if has_field:
                options["FusedActivationFunction"] = code
            self.m.op(opcode, inputs, [self.produce(out_name, layout)], options_type, version, **options)
            return
        pre = self.new(out_name, layout, "/pre_act")
        if has_field:
            options["FusedActivationFunction"] = _FUSED_NONE
        self.m.op(opcode, inputs, [pre], options_type, version, **options)
        self.activation(act, pre, out_name, layout)

    def activation(self, act, x, out_name, layout):
        """Ops computing IR activation ``act`` = (name, a, b) of TFLite tensor ``x`` into ``out_name``."""
        name, a, b = act
        code = fused_code(name, a, b)
        unary = {_FUSED_RELU: "RELU", _FUSED_RELU6: "RELU6", _FUSED_RELU_N1_TO_1: "RELU_N1_TO_1", _FUSED_TANH: "TANH"}
        simple = {"sigmoid": "LOGISTIC", "hardswish": "HARD_SWISH"}
        if code in unary:
            self.m.op(unary[code], [x], [self.produce(out_name, layout)])
        elif name in simple:
            self.m.op(simple[name], [x], [self.produce(out_name, layout)])
        elif name == "leakyrelu":
            self.m.op("LEAKY_RELU", [x], [self.produce(out_name, layout)], "LeakyReluOptions", Alpha=a)
        elif name == "hardsigmoid":
            # clip(a*x + b, 0, 1) = relu(clip(a*x + b, -1, 1)): each step exact in float32 like the IR's,
            # and all of them ops edgert's own TFLite reader takes back.
            scaled = self.new(out_name, layout, "/hs_mul")
            self.m.op("MUL", [x, self.float_const([a])], [scaled], "MulOptions", FusedActivationFunction=0)
            shifted = self.new(out_name, layout, "/hs_add")
            self.m.op("ADD", [scaled, self.float_const([b])], [shifted], "AddOptions",
                      FusedActivationFunction=_FUSED_RELU_N1_TO_1)
            self.m.op("RELU", [shifted], [self.produce(out_name, layout)])
        elif name == "clip":
            steps = [("MAXIMUM", a)] if a > -math.inf else []
            steps += [("MINIMUM", b)] if b < math.inf else []
            if not steps:  # clip(-inf, inf): the identity
                shape = self.shape(out_name, layout)
                self.m.op("RESHAPE", [x, self.int_const(shape)], [self.produce(out_name, layout)], "ReshapeOptions",
                          NewShape=list(shape))
            for k, (opcode, bound) in enumerate(steps):
                last = k == len(steps) - 1
                out = self.produce(out_name, layout) if last else self.new(out_name, layout, "/clip_lo")
                self.m.op(opcode, [x, self.float_const([bound])], [out])
                x = out
        else:
            raise self.error(f"activation '{name}' has no TFLite equivalent")

    # --- spatial padding ---------------------------------------------------------------------
    def padding(self, x_name, kernel, strides, dilations, pads, out_hw, allow_same=True, allow_pad=True,
                pad_value=0.0):
        """(TFLite input tensor, Padding code 0 SAME / 1 VALID) for an NHWC windowed op. Pads that select
        other windows than SAME/VALID are materialised by a PAD (PADV2 for a non-zero value) first."""
        in_hw = self.shape(x_name)[2:]
        modes = {"SAME", "VALID"} if allow_same else {"VALID"}
        for d in range(2):
            before, after = pads[d], pads[d + 2]
            ok = set()
            for mode in modes:
                try:
                    out, b, _ = tf_padding(mode, in_hw[d], kernel[d], strides[d], dilations[d])
                except ValueError:
                    continue
                if out == out_hw[d] and b == before:
                    ok.add(mode)
            if before == 0 and after == 0 and "VALID" not in ok:
                ok = set()  # e.g. an empty VALID output: let the PAD path report it
            modes &= ok
        x = self.get(x_name, NHWC)
        if modes:
            return x, (1 if "VALID" in modes else 0)
        if not allow_pad:
            raise self.error(f"pads {pads} select other windows than SAME or VALID, and a PAD would change "
                             "the result (average pooling that excludes pads from the count)")
        for d in range(2):
            eff = (kernel[d] - 1) * dilations[d] + 1
            if (in_hw[d] + pads[d] + pads[d + 2] - eff) // strides[d] + 1 != out_hw[d]:
                raise self.error(f"pads {pads} give an output size (ceil mode?) that neither SAME, VALID nor an "
                                 f"explicit PAD reproduces")
        n, h, w, c = self.shape(x_name, NHWC)
        padded = self.m.tensor(f"{x_name}/pad_for_{self.node.name}",
                               (n, h + pads[0] + pads[2], w + pads[1] + pads[3], c))
        paddings = self.int_const([[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]])
        if pad_value == 0.0:
            self.m.op("PAD", [x, paddings], [padded])
        else:
            self.m.op("PADV2", [x, paddings, self.float_const([pad_value])], [padded])
        return padded, 1

    # --- the walk ----------------------------------------------------------------------------
    def run(self) -> bytes:
        g = self.g
        for name in g.inputs:
            layout = NHWC if len(g.tensors[name].shape) == 4 else PLAIN
            self.m.inputs.append(self.produce(name, layout))
        for node in g.nodes:
            self.node = node
            handler = _HANDLERS.get(node.op)
            if handler is None:
                raise self.error(f"op {node.op} has no TFLite exporter",
                                 hint="supported: " + ", ".join(sorted(_HANDLERS)))
            try:
                handler(self, node, node.attrs)
            except (KeyError, IndexError, ValueError, TypeError) as exc:
                raise self.error(f"unexpected node form ({type(exc).__name__}: {exc})") from None
        self.node = None
        for name in g.outputs:
            if self.is_const(name):
                raise self.error(f"graph output '{name}' is a constant; TFLite outputs are computed tensors")
            index = self.get(name, NHWC if len(g.tensors[name].shape) == 4 else PLAIN)
            # The output tensor carries the IR name (a relayout copy had a suffix).
            for t in self.m.tensors:
                if t["name"] == name:
                    t["name"] = f"{name}/internal"
            self.m.tensors[index]["name"] = name
            self.m.outputs.append(index)
        return self.m.to_bytes()


_FUSED_OPTIONS = ("Conv2DOptions", "DepthwiseConv2DOptions", "Pool2DOptions", "AddOptions", "SubOptions",
                  "MulOptions", "DivOptions", "FullyConnectedOptions", "ConcatenationOptions")


# --- op handlers: one per IR op, named after it -----------------------------------------------------
def Conv(ex, node, attrs):
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    if not ex.is_const(w) or (bias and not ex.is_const(bias)):
        raise ex.error("weights and bias must be constants")
    weights = ex.const_value(w)
    c_in = ex.shape(x)[1]
    group = int(attrs.get("group", 1))
    depthwise = group > 1 and group == c_in and weights.shape[1] == 1
    if group != 1 and not depthwise:
        raise ex.error(f"grouped convolution (group {group} of {c_in} channels) has no TFLite equivalent",
                       hint="only group 1 and depthwise (group = input channels) export")
    _conv2d(ex, node, x, w, weights, bias, group, attrs)


def _conv2d(ex, node, x, w_name, weights, bias_name, group, attrs):
    """CONV_2D (group 1) or DEPTHWISE_CONV_2D (group = input channels) of IR weights [M, C/g, kH, kW]."""
    c_in, m_out = ex.shape(x)[1], weights.shape[0]
    depthwise = group > 1
    kernel = weights.shape[2:]
    strides, dilations = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1])
    pads = attrs.get("pads", [0, 0, 0, 0])
    src, padding = ex.padding(x, kernel, strides, dilations, pads, ex.shape(node.outputs[0])[2:])
    b = ex.const_value(bias_name) if bias_name else np.zeros(m_out, np.float32)
    bias_t = ex.m.const(bias_name or f"{node.name}/zero_bias", b)
    common = {"Padding": padding, "StrideW": strides[1], "StrideH": strides[0], "DilationWFactor": dilations[1],
              "DilationHFactor": dilations[0]}
    if depthwise:
        w_t = ex.m.const(f"{w_name}/1hwo", np.transpose(weights, (1, 2, 3, 0)))
        version = 2 if tuple(dilations) != (1, 1) else 1
        ex.emit("DEPTHWISE_CONV_2D", [src, w_t, bias_t], node.outputs[0], NHWC, "DepthwiseConv2DOptions",
                _act_of(attrs), version, DepthMultiplier=m_out // c_in, **common)
    else:
        w_t = ex.m.const(f"{w_name}/ohwi", np.transpose(weights, (0, 2, 3, 1)))
        ex.emit("CONV_2D", [src, w_t, bias_t], node.outputs[0], NHWC, "Conv2DOptions", _act_of(attrs), **common)


def ConvTranspose(ex, node, attrs):
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    if not ex.is_const(w) or (bias and not ex.is_const(bias)):
        raise ex.error("weights and bias must be constants")
    if int(attrs.get("group", 1)) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise ex.error("grouped or dilated transposed convolution has no TFLite equivalent")
    weights = ex.const_value(w)  # [C_in, C_out, kH, kW]
    strides, pads = attrs.get("strides", [1, 1]), attrs.get("pads", [0, 0, 0, 0])
    out_pad = attrs.get("output_padding", [0, 0])
    in_hw, out_shape = ex.shape(x)[2:], ex.shape(node.outputs[0], NHWC)
    modes = {"SAME", "VALID"}
    for d in range(2):  # TFLite derives the crop from the output size; keep a padding giving the IR's
        wanted = (pads[d], pads[d + 2], out_pad[d])
        modes = {m for m in modes if _transpose_pads(m, in_hw[d], out_shape[1 + d], weights.shape[2 + d],
                                                     strides[d]) == wanted}
    if not modes:
        raise ex.error(f"pads {pads} / output_padding {out_pad} match neither TFLite's SAME nor VALID cropping")
    b = ex.const_value(bias) if bias else np.zeros(weights.shape[1], np.float32)
    inputs = [ex.int_const(out_shape), ex.m.const(f"{w}/ohwi", np.transpose(weights, (1, 2, 3, 0))),
              ex.get(x, NHWC), ex.m.const(bias or f"{node.name}/zero_bias", b)]
    # The activation follows as its own op: TransposeConvOptions' fused activation is recent in LiteRT.
    ex.emit("TRANSPOSE_CONV", inputs, node.outputs[0], NHWC, "TransposeConvOptions", _act_of(attrs), 3,
            Padding=1 if "VALID" in modes else 0, StrideW=strides[1], StrideH=strides[0])


def _transpose_pads(mode, in_size, out_size, k, stride):
    """(before, after, output_padding) TFLite crops with, or None when ``mode`` would not even map an
    output of ``out_size`` back onto ``in_size`` inputs (LiteRT then computes another shape)."""
    try:
        if tf_padding(mode, out_size, k, stride)[0] != in_size:
            return None
        return transpose_conv_pads(mode, in_size, out_size, k, stride)
    except ValueError:
        return None


def Resize(ex, node, attrs):
    from edgert.ops.resize import resolve_scales_sizes
    x = node.inputs[0]
    shape = ex.shape(x)
    scales, sizes = resolve_scales_sizes({"scales": [], "sizes": [], **attrs}, shape)
    mode, ctm, nearest = attrs.get("mode", "nearest"), attrs.get("coordinate_transformation_mode", "half_pixel"), \
        attrs.get("nearest_mode", "round_prefer_floor")
    # TFLite's (align_corners, half_pixel_centers) per IR sampling rule (the inverse of the TFLite reader's).
    if mode == "linear":
        flags = {"align_corners": (True, False), "half_pixel": (False, True), "asymmetric": (False, False)}.get(ctm)
        if ctm == "pytorch_half_pixel" and min(sizes[2:]) > 1:
            flags = (False, True)
    else:
        flags = {("align_corners", "round_prefer_ceil"): (True, False), ("asymmetric", "floor"): (False, False),
                 ("tf_half_pixel_for_nn", "floor"): (False, True)}.get((ctm, nearest))
    if flags is None:
        raise ex.error(f"{mode} resize with {ctm}" + (f"/{nearest}" if mode == "nearest" else "")
                       + " sampling has no TFLite equivalent")
    if not all(math.isclose(scales[d] * shape[d], sizes[d], rel_tol=1e-9) for d in (2, 3)):
        raise ex.error(f"scales {scales[2:]} differ from output/input sizes {sizes[2:]}/{list(shape[2:])}; "
                       "TFLite samples by the sizes")
    opcode, options_type = (("RESIZE_BILINEAR", "ResizeBilinearOptions") if mode == "linear" else
                            ("RESIZE_NEAREST_NEIGHBOR", "ResizeNearestNeighborOptions"))
    ex.emit(opcode, [ex.get(x, NHWC), ex.int_const(sizes[2:])], node.outputs[0], NHWC, options_type,
            version=3 if flags[1] else 1, AlignCorners=flags[0], HalfPixelCenters=flags[1])


def SparseConv1x1(ex, node, attrs):
    """The sparse op (edgert/ops/sparse.py: CSR/BSR weights of a 1x1 conv or FC layer) exported dense:
    TFLite's sparse tensors are a different encoding, and the benchmarks want LiteRT's dense speed."""
    from edgert.ops.sparse import densify
    x, values, cols, rowptr = node.inputs[:4]
    bias = node.inputs[4] if len(node.inputs) > 4 else ""
    if not all(ex.is_const(t) for t in (values, cols, rowptr)) or (bias and not ex.is_const(bias)):
        raise ex.error("sparse weights and bias must be constants")
    bm, bk = attrs.get("block", [1, 1])
    rp = ex.g.consts[rowptr]
    weights = densify(ex.const_value(values), ex.g.consts[cols], rp, (len(rp) - 1) * bm, ex.shape(x)[1], (bm, bk))
    if len(ex.shape(x)) == 4:
        _conv2d(ex, node, x, values, weights[:, :, None, None], bias, 1, attrs)
    else:
        _fully_connected(ex, node, x, weights, ex.const_value(bias) if bias else None, bias, attrs,
                         f"{values}/dense")


def _pool(ex, node, attrs, opcode):
    x = node.inputs[0]
    kernel, strides = attrs["kernel"], attrs.get("strides", [1, 1])
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise ex.error("dilated pooling has no TFLite equivalent")
    pads = attrs.get("pads", [0, 0, 0, 0])
    out_hw = ex.shape(node.outputs[0])[2:]
    if opcode == "MAX_POOL_2D":  # pads never win the max: SAME's ignored pads, or -inf
        src, padding = ex.padding(x, kernel, strides, (1, 1), pads, out_hw, pad_value=-math.inf)
    elif attrs.get("count_include_pad", 0):  # SAME would leave the pads out of the count: zero PAD + VALID
        src, padding = ex.padding(x, kernel, strides, (1, 1), pads, out_hw, allow_same=False)
    else:
        src, padding = ex.padding(x, kernel, strides, (1, 1), pads, out_hw, allow_pad=False)
    ex.emit(opcode, [src], node.outputs[0], NHWC, "Pool2DOptions", ("none", 0.0, 0.0), Padding=padding,
            StrideW=strides[1], StrideH=strides[0], FilterWidth=kernel[1], FilterHeight=kernel[0])


def MaxPool(ex, node, attrs):
    _pool(ex, node, attrs, "MAX_POOL_2D")


def AveragePool(ex, node, attrs):
    _pool(ex, node, attrs, "AVERAGE_POOL_2D")


def GlobalAveragePool(ex, node, attrs):
    x = ex.get(node.inputs[0], NHWC)
    ex.emit("MEAN", [x, ex.int_const([1, 2])], node.outputs[0], NHWC, "ReducerOptions", KeepDims=True)


def _reduce(ex, node, attrs, opcode):
    x = node.inputs[0]
    rank = len(ex.shape(x))
    axes = sorted(a % rank for a in attrs["axes"])
    keep = bool(attrs.get("keepdims", 1))
    layout = ex.native.get(x, PLAIN) if rank == 4 else PLAIN
    if layout == NHWC and not keep:
        kept = [p for p in TO_NHWC if p not in axes]
        if kept != sorted(kept):  # the surviving dims would come out in another order than the IR's
            layout = PLAIN
    tfl_axes = [TO_NHWC.index(a) for a in axes] if layout == NHWC else axes
    ex.emit(opcode, [ex.get(x, layout), ex.int_const(sorted(tfl_axes))], node.outputs[0],
            layout if keep else PLAIN, "ReducerOptions", KeepDims=keep)


def ReduceMean(ex, node, attrs):
    _reduce(ex, node, attrs, "MEAN")


def ReduceSum(ex, node, attrs):
    _reduce(ex, node, attrs, "SUM")


def ReduceMax(ex, node, attrs):
    _reduce(ex, node, attrs, "REDUCE_MAX")


def Reshape(ex, node, attrs):
    x = node.inputs[0]
    shape = [int(d) for d in attrs["shape"]]
    in_shape = ex.shape(x)
    # A tensor held NHWC whose relayout only moves unit dims has the IR's byte order already.
    if ex.native.get(x) == NHWC and only_moves_unit_dims(in_shape, TO_NHWC):
        src = ex.get(x, NHWC)
    else:
        src = ex.get(x, PLAIN)
    ex.emit("RESHAPE", [src, ex.int_const(shape)], node.outputs[0], PLAIN, "ReshapeOptions", NewShape=shape)


def Transpose(ex, node, attrs):
    ex.emit("TRANSPOSE", [ex.get(node.inputs[0], PLAIN), ex.int_const(attrs["perm"])], node.outputs[0], PLAIN)


def FullyConnected(ex, node, attrs):
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    if not ex.is_const(w) or (bias and not ex.is_const(bias)):
        raise ex.error("weights and bias must be constants")
    _fully_connected(ex, node, x, ex.const_value(w), ex.const_value(bias) if bias else None, bias, attrs, w)


def _fully_connected(ex, node, x, weights, bias, bias_name, attrs, w_name):
    if len(ex.shape(x)) != 2:
        raise ex.error(f"fully connected input of rank {len(ex.shape(x))}; the exporter handles [N, K]")
    w_t = ex.m.const(w_name, weights)
    b = bias if bias is not None else np.zeros(weights.shape[0], np.float32)
    b_t = ex.m.const(bias_name or f"{node.name}/zero_bias", b)
    ex.emit("FULLY_CONNECTED", [ex.get(x, PLAIN), w_t, b_t], node.outputs[0], PLAIN, "FullyConnectedOptions",
            _act_of(attrs), KeepNumDims=False)


def MatMul(ex, node, attrs):
    a, b = node.inputs
    if ex.is_const(a) or not ex.is_const(b) or len(ex.shape(b)) != 2:
        raise ex.error("only MatMul of an activation by a constant 2-D matrix exports (as FULLY_CONNECTED)")
    _fully_connected(ex, node, a, np.ascontiguousarray(ex.const_value(b).T), None, "", {}, f"{b}/transposed")


def Softmax(ex, node, attrs):
    x = node.inputs[0]
    rank = len(ex.shape(x))
    axis = attrs.get("axis", -1) % rank
    if rank == 4 and axis == 1:
        layout = NHWC  # channels are TFLite's last axis
    elif axis == rank - 1:
        layout = PLAIN
    else:
        raise ex.error(f"softmax over axis {axis} of a rank-{rank} tensor: TFLite's SOFTMAX takes the last axis")
    ex.emit("SOFTMAX", [ex.get(x, layout)], node.outputs[0], layout, "SoftmaxOptions", Beta=1.0)


_BINARY = {"Add": ("ADD", "AddOptions"), "Sub": ("SUB", "SubOptions"), "Mul": ("MUL", "MulOptions"),
           "Div": ("DIV", "DivOptions"), "Max": ("MAXIMUM", None), "Min": ("MINIMUM", None)}


def _binary(ex, node, attrs):
    opcode, options_type = _BINARY[node.op]
    out = node.outputs[0]
    rank = len(ex.shape(out))
    layout = NHWC if rank == 4 and any(ex.native.get(i) == NHWC for i in node.inputs) else PLAIN
    inputs = [ex.get_broadcast(i, layout, rank) for i in node.inputs]
    ex.emit(opcode, inputs, out, layout, options_type, _act_of(attrs))


def _unary(act_of_attrs):
    def handler(ex, node, attrs):
        x = node.inputs[0]
        layout = ex.native.get(x, PLAIN)
        ex.activation(act_of_attrs(attrs), ex.get(x, layout), node.outputs[0], layout)
    return handler


def Pad(ex, node, attrs):
    x = node.inputs[0]
    rank = len(ex.shape(x))
    pads = attrs["pads"]
    layout = NHWC if rank == 4 else PLAIN
    order = TO_NHWC if layout == NHWC else tuple(range(rank))
    paddings = ex.int_const([[pads[d], pads[rank + d]] for d in order])
    src = ex.get(x, layout)
    mode, value = attrs.get("mode", "constant"), float(attrs.get("value", 0.0))
    if mode == "constant" and value == 0.0:
        ex.emit("PAD", [src, paddings], node.outputs[0], layout)
    elif mode == "constant":
        ex.emit("PADV2", [src, paddings, ex.float_const([value])], node.outputs[0], layout)
    elif mode == "reflect":
        ex.emit("MIRROR_PAD", [src, paddings], node.outputs[0], layout, "MirrorPadOptions", Mode=0)
    else:
        raise ex.error(f"pad mode '{mode}' has no TFLite equivalent (MIRROR_PAD does reflect/symmetric)")


def Concat(ex, node, attrs):
    out = node.outputs[0]
    rank = len(ex.shape(out))
    axis = attrs["axis"] % rank
    layout = NHWC if rank == 4 and any(ex.native.get(i) == NHWC for i in node.inputs) else PLAIN
    tfl_axis = TO_NHWC.index(axis) if layout == NHWC else axis
    ex.emit("CONCATENATION", [ex.get(i, layout) for i in node.inputs], out, layout, "ConcatenationOptions",
            Axis=tfl_axis)


def Identity(ex, node, attrs):
    x = node.inputs[0]
    layout = ex.native.get(x, PLAIN)
    shape = ex.shape(x, layout)
    ex.emit("RESHAPE", [ex.get(x, layout), ex.int_const(shape)], node.outputs[0], layout, "ReshapeOptions",
            NewShape=list(shape))


_HANDLERS = {
    "Conv": Conv, "MaxPool": MaxPool, "AveragePool": AveragePool, "GlobalAveragePool": GlobalAveragePool,
    "ReduceMean": ReduceMean, "ReduceSum": ReduceSum, "ReduceMax": ReduceMax, "Reshape": Reshape,
    "Transpose": Transpose, "FullyConnected": FullyConnected, "MatMul": MatMul, "Softmax": Softmax,
    "Pad": Pad, "Concat": Concat, "Identity": Identity, "SparseConv1x1": SparseConv1x1,
    "ConvTranspose": ConvTranspose, "Resize": Resize,
    **{op: _binary for op in _BINARY},
    "Relu": _unary(lambda a: ("relu", 0.0, 0.0)),
    "Clip": _unary(lambda a: ("clip", float(a.get("min", -math.inf)), float(a.get("max", math.inf)))),
    "Sigmoid": _unary(lambda a: ("sigmoid", 0.0, 0.0)),
    "HardSwish": _unary(lambda a: ("hardswish", 0.0, 0.0)),
    "Tanh": _unary(lambda a: ("tanh", 0.0, 0.0)),
    "HardSigmoid": _unary(lambda a: ("hardsigmoid", float(a.get("alpha", 0.2)), float(a.get("beta", 0.5)))),
    "LeakyRelu": _unary(lambda a: ("leakyrelu", float(a.get("alpha", 0.01)), 0.0)),
}
