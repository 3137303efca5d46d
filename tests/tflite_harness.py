"""Run a .tflite model in edgert (convert -> Session) and in LiteRT on the same inputs; compare.

Also a small flatbuffer writer (``ModelWriter``) so tests can build single-op TFLite models by hand
(including sparse tensors and custom ops) and check them against LiteRT, the reference engine.

    report = compare("face_detection_short_range.tflite", kind="gradient")
    report.worst_rel   # max over outputs of max|edgert - litert| / max|litert|
    assert_matches(path, tol=1e-4)   # the conformance criterion, every input kind

Sigmoid outputs lying wholly in the flat tail are judged on their logits, and a disagreement beyond
the tolerance is arbitrated by a float64 evaluation of the same graph (see ``assert_matches``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
import tflite

from converters.tflite_entry import convert_tflite
from edgert.runtime.session import Session

INPUT_KINDS = ("random", "gradient", "constant", "portrait")


# --- reference engine ------------------------------------------------------------------------------
def litert_interpreter_class():
    """LiteRT's Interpreter; ``tflite_runtime`` only as a fallback (it needs NumPy 1)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    if np.__version__.startswith("1."):
        try:
            from tflite_runtime.interpreter import Interpreter
            return Interpreter
        except ImportError:
            pass
    pytest.skip("no TFLite reference engine (pip install ai-edge-litert)")


def run_litert(model, feeds: dict, threads: int = 1) -> dict:
    """Run ``model`` (path or bytes) in LiteRT; returns {output name: array}."""
    Interpreter = litert_interpreter_class()
    kw = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    interp = Interpreter(num_threads=threads, **kw)
    interp.allocate_tensors()
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], np.ascontiguousarray(feeds[d["name"]], dtype=d["dtype"]))
    interp.invoke()
    return {d["name"]: np.array(interp.get_tensor(d["index"])) for d in interp.get_output_details()}


def edgert_graph(model, **kw):
    """The graph a user gets from ``edgert convert``: the TFLite frontend, then the shared graph passes."""
    graph = convert_tflite(model, **kw)
    from converters.passes import run_passes
    run_passes(graph)
    return graph


def run_edgert(model, feeds: dict, threads: int = 1, graph=None) -> dict:
    graph = graph if graph is not None else edgert_graph(model)
    return Session(graph, threads=threads).run(feeds)


# --- inputs --------------------------------------------------------------------------------------------
def make_inputs(specs, kind: str = "random", seed: int = 0) -> dict:
    """Seeded float32 inputs per (name, shape), all in [-1, 1]:

    * ``random``: uniform noise;
    * ``gradient``: a smooth image (sine of a diagonal ramp, a different phase per input);
    * ``constant``: 0.5 everywhere;
    * ``portrait``: a flat synthetic head-and-shoulders picture (NHWC, 3 channels; other shapes get
      the gradient), which puts segmentation and face models in their working range.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for k, (name, shape) in enumerate(specs):
        shape = tuple(int(d) for d in shape)
        if kind == "random":
            x = rng.uniform(-1.0, 1.0, shape)
        elif kind == "gradient" or (kind == "portrait" and (len(shape) != 4 or shape[3] != 3)):
            grids = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in shape], indexing="ij")
            x = sum(g * (0.5 + 0.25 * i) for i, g in enumerate(grids[1:], 1)) / max(1, len(shape) - 1)
            x = np.sin(2.0 * x + 0.3 * k) if len(shape) > 1 else x
        elif kind == "constant":
            x = np.full(shape, 0.5)
        elif kind == "portrait":
            x = np.broadcast_to(_portrait(shape[1], shape[2]), shape)
        else:
            raise ValueError(f"unknown input kind {kind!r}; use one of {INPUT_KINDS}")
        feeds[name] = np.ascontiguousarray(x, dtype=np.float32)
    return feeds


def _portrait(h, w):
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w], dtype=np.float64)[:, None, None]
    img = np.empty((h, w, 3))
    img[:] = (0.2, 0.35, 0.6)
    img += 0.15 * y[..., None]
    img[((x - 0.5) / 0.16) ** 2 + ((y - 0.38) / 0.2) ** 2 < 1] = (0.92, 0.74, 0.62)  # head
    img[(np.abs(x - 0.5) < 0.3) & (y > 0.6)] = (0.75, 0.2, 0.2)  # shoulders
    for cx in (0.44, 0.56):
        img[((x - cx) / 0.025) ** 2 + ((y - 0.35) / 0.02) ** 2 < 1] = (0.1, 0.1, 0.1)  # eyes
    return img * 2.0 - 1.0


# --- comparison --------------------------------------------------------------------------------------
@dataclass
class Report:
    """Per output: (max abs diff, max |reference|, relative = abs / max|reference|)."""

    errors: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def worst_rel(self) -> float:
        return max((e[2] for e in self.errors.values()), default=0.0)

    def __str__(self):
        text = "; ".join(f"{n}: abs {a:.2e} (max|ref| {m:.3g}, rel {r:.2e})" for n, (a, m, r) in self.errors.items())
        return text + "".join(f" [{note}]" for note in self.notes)


def compare_outputs(ours: dict, theirs: dict) -> Report:
    if set(ours) != set(theirs):
        raise AssertionError(f"output names differ: edgert {sorted(ours)} vs reference {sorted(theirs)}")
    report = Report()
    for name, ref in theirs.items():
        got = ours[name]
        if got.shape != ref.shape:
            raise AssertionError(f"output '{name}': edgert shape {got.shape} vs reference {ref.shape}")
        diff = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        report.errors[name] = (diff, scale, diff / scale if scale > 0 else diff)
    return report


@dataclass
class Run:
    """One model on one input in both engines (kept so a disagreement can be arbitrated later)."""

    model: object
    graph: object
    feeds: dict
    ours: dict
    theirs: dict

    def report(self) -> Report:
        return compare_outputs(self.ours, self.theirs)


def run_both(model, kind="random", seed=0, threads=1, graph=None) -> Run:
    graph = graph if graph is not None else edgert_graph(model)
    feeds = make_inputs([(n, graph.tensors[n].shape) for n in graph.inputs], kind, seed)
    return Run(model, graph, feeds, run_edgert(model, feeds, threads, graph), run_litert(model, feeds, threads))


def compare(model, kind="random", seed=0, threads=1, graph=None) -> Report:
    """Convert and run ``model`` in both engines on the same inputs; per-output errors."""
    return run_both(model, kind, seed, threads, graph).report()


# A sigmoid output whose largest value is below this lies wholly in the flat tail, where
# sigmoid(z) ~ exp(z): its relative error is the *absolute* error of the logit z (|z| > 7), so the
# relative criterion is applied to the logits instead (see ``judged_runs``).
SIGMOID_TAIL = 1e-3


def judged_runs(model, kind="random", seed=0, threads=1) -> list:
    """[(output name, Run, name in that run)]: what each output is judged on. A LOGISTIC output lying
    wholly in the sigmoid's tail (max < SIGMOID_TAIL in LiteRT) is judged on its logits, from a second
    run of both engines with that output rewired to the LOGISTIC's input."""
    run = run_both(model, kind, seed, threads)
    names, indices, logits = list(run.theirs), _output_indices(model), logit_outputs(model)
    tails = {k for k, name in enumerate(names)
             if logits[k] != indices[k] and float(np.max(np.abs(run.theirs[name]))) < SIGMOID_TAIL}
    judged = [(name, run, name) for k, name in enumerate(names) if k not in tails]
    if tails:
        inner = run_both(with_outputs(model, [logits[k] if k in tails else t for k, t in enumerate(indices)]),
                         kind, seed, threads)
        judged += [(names[k], inner, list(inner.theirs)[k]) for k in sorted(tails)]
    return judged


def arbitrate(run: Run, name: str):
    """(edgert error, LiteRT error) against a float64 evaluation of the same IR graph (every op's
    numpy reference computes in float64), relative to max|reference output|."""
    from edgert.runtime.reference import run_reference
    truth = run_reference(run.graph, run.feeds)[name].astype(np.float64)
    scale = max(float(np.max(np.abs(truth))), 1e-30)
    return (float(np.max(np.abs(run.ours[name] - truth))) / scale,
            float(np.max(np.abs(run.theirs[name] - truth))) / scale)


def assert_matches(model, kinds=INPUT_KINDS, tol=1e-4, seed=0) -> dict:
    """Every output within ``tol`` x max|output| of LiteRT for every input kind; returns {kind: Report}.

    Sigmoid-tail outputs are judged on their logits (``judged_runs``). Where edgert and LiteRT differ by
    more than ``tol``, a float64 evaluation of the graph decides: edgert passes only if it is itself
    within ``tol`` of it and closer to it than LiteRT (the disagreement is then LiteRT's rounding,
    e.g. its float32 accumulation in MEAN). Every such case is noted in the report."""
    reports = {}
    for kind in kinds:
        report = Report()
        for out, run, name in judged_runs(model, kind, seed):
            err = run.report().errors[name]
            report.errors[out] = err
            if name != out:
                report.notes.append(f"'{out}' lies in the sigmoid tail: judged on its logits '{name}'")
            if err[0] > tol * max(err[1], 1e-30):
                ours, theirs = arbitrate(run, name)
                report.notes.append(f"'{out}' differs from LiteRT by {err[2]:.2e}; against a float64 evaluation "
                                    f"edgert is off by {ours:.2e}, LiteRT by {theirs:.2e}")
                assert ours <= tol and ours < theirs, f"{kind} input, output '{out}': {report}"
        reports[kind] = report
    return reports


def _output_indices(model):
    from converters.tflite import read_model
    return read_model(model).outputs


# --- looking inside a model ----------------------------------------------------------------------------
def with_outputs(model, tensors) -> bytes:
    """A copy of ``model`` whose subgraph outputs are the given tensor indices (same count as before),
    patched in place in the flatbuffer: both engines then report those intermediate tensors."""
    buf = bytearray(model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes())
    sg = tflite.Model.GetRootAs(buf, 0).Subgraphs(0)
    if len(tensors) != sg.OutputsLength():
        raise ValueError(f"the model has {sg.OutputsLength()} outputs, got {len(tensors)} replacements")
    start = sg._tab.Vector(sg._tab.Offset(8))  # SubGraph.outputs is field 2 (vtable slot 8)
    for k, t in enumerate(tensors):
        buf[start + 4 * k:start + 4 * k + 4] = int(t).to_bytes(4, "little", signed=True)
    return bytes(buf)


def logit_outputs(model) -> list:
    """For each output: the input tensor of the LOGISTIC producing it, or the output itself."""
    from converters.tflite import read_model
    m = read_model(model)
    producer = {t: op for op in m.operators for t in op.outputs}
    return [producer[t].inputs[0] if t in producer and producer[t].opcode == "LOGISTIC" else t for t in m.outputs]


# --- a small TFLite flatbuffer writer for hand-built test models --------------------------------------
_TYPE = {"FLOAT32": (0, "<f4"), "FLOAT16": (1, "<f2"), "INT32": (2, "<i4"), "UINT8": (3, "u1"),
         "INT64": (4, "<i8"), "INT8": (9, "i1")}


class ModelWriter:
    """Collects tensors and operators, then ``build(inputs, outputs)`` returns the .tflite bytes."""

    def __init__(self, legacy_opcodes=False):
        self.tensors, self.buffers, self.ops, self.opcodes = [], [b""], [], []
        self.legacy_opcodes = legacy_opcodes  # write only the int8 deprecated_builtin_code (old files)

    def tensor(self, shape, dtype="FLOAT32", data=None, name=None, sparsity=None, quant=None) -> int:
        buffer = 0
        if data is not None:
            self.buffers.append(np.ascontiguousarray(data, dtype=_TYPE[dtype][1]).tobytes())
            buffer = len(self.buffers) - 1
        self.tensors.append(dict(shape=list(shape), type=_TYPE[dtype][0], buffer=buffer,
                                 name=name or f"t{len(self.tensors)}", sparsity=sparsity, quant=quant))
        return len(self.tensors) - 1

    def const(self, array, dtype=None, name=None) -> int:
        array = np.asarray(array)
        dtype = dtype or {"f": "FLOAT32", "i": "INT32"}[array.dtype.kind]
        return self.tensor(array.shape, dtype, array, name)

    def op(self, opcode, inputs, outputs, options_type=None, options=None, custom_options=None, version=1):
        custom = not hasattr(tflite.BuiltinOperator, opcode)
        key = (opcode, version)
        if key not in self.opcodes:
            self.opcodes.append(key)
        self.ops.append(dict(code=self.opcodes.index(key), custom=custom, inputs=list(inputs), outputs=list(outputs),
                             options_type=options_type, options=options or {}, custom_options=custom_options))

    def build(self, inputs, outputs, litert_shapes=False) -> bytes:
        """The model's bytes; with ``litert_shapes`` every declared shape is first taken from LiteRT's
        own shape inference (so tests need not compute output shapes by hand)."""
        if litert_shapes:
            from ai_edge_litert.interpreter import OpResolverType
            content = self.build(inputs, outputs)
            try:  # without delegates every tensor keeps its inferred shape in get_tensor_details
                interp = litert_interpreter_class()(
                    model_content=content, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
                interp.allocate_tensors()
            except RuntimeError:  # a custom op only the default (XNNPACK) delegate implements
                interp = litert_interpreter_class()(model_content=content)
                interp.allocate_tensors()
            for d in interp.get_tensor_details():
                if d["index"] < len(self.tensors) and self.tensors[d["index"]]["buffer"] == 0:
                    self.tensors[d["index"]]["shape"] = [int(v) for v in d["shape"]]
        b = flatbuffers.Builder(1024)
        vec = lambda start, items, add: (start(b, len(items)), [add(v) for v in reversed(items)], b.EndVector())[2]
        ints = lambda start, items: vec(start, list(items), b.PrependInt32)
        offsets = lambda start, items: vec(start, list(items), b.PrependUOffsetTRelative)

        buffers = []
        for data in self.buffers:
            dv = b.CreateByteVector(data) if data else None
            tflite.BufferStart(b)
            if dv is not None:
                tflite.BufferAddData(b, dv)
            buffers.append(tflite.BufferEnd(b))
        tensors = []
        for t in self.tensors:
            name, shape = b.CreateString(t["name"]), ints(tflite.TensorStartShapeVector, t["shape"])
            sp = self._sparsity(b, t["sparsity"], ints, offsets) if t["sparsity"] else None
            q = self._quant(b, t["quant"]) if t["quant"] else None
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, shape)
            tflite.TensorAddType(b, t["type"])
            tflite.TensorAddBuffer(b, t["buffer"])
            tflite.TensorAddName(b, name)
            if sp is not None:
                tflite.TensorAddSparsity(b, sp)
            if q is not None:
                tflite.TensorAddQuantization(b, q)
            tensors.append(tflite.TensorEnd(b))
        ops = [self._operator(b, op, ints) for op in self.ops]
        sg_tensors, sg_ops = offsets(tflite.SubGraphStartTensorsVector, tensors), offsets(tflite.SubGraphStartOperatorsVector, ops)
        sg_in, sg_out = ints(tflite.SubGraphStartInputsVector, inputs), ints(tflite.SubGraphStartOutputsVector, outputs)
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, sg_tensors)
        tflite.SubGraphAddOperators(b, sg_ops)
        tflite.SubGraphAddInputs(b, sg_in)
        tflite.SubGraphAddOutputs(b, sg_out)
        subgraph = tflite.SubGraphEnd(b)
        codes = []
        for name, version in self.opcodes:
            custom = not hasattr(tflite.BuiltinOperator, name)
            cname = b.CreateString(name) if custom else None
            code = 32 if custom else getattr(tflite.BuiltinOperator, name)
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            if not self.legacy_opcodes:
                tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, version)
            if cname is not None:
                tflite.OperatorCodeAddCustomCode(b, cname)
            codes.append(tflite.OperatorCodeEnd(b))
        codes_v = offsets(tflite.ModelStartOperatorCodesVector, codes)
        subgraphs_v = offsets(tflite.ModelStartSubgraphsVector, [subgraph])
        buffers_v = offsets(tflite.ModelStartBuffersVector, buffers)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, codes_v)
        tflite.ModelAddSubgraphs(b, subgraphs_v)
        tflite.ModelAddBuffers(b, buffers_v)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    def _operator(self, b, op, ints):
        opts = None
        if op["options_type"]:
            T = op["options_type"]
            vectors = {k: ints(getattr(tflite, f"{T}Start{k}Vector"), v) for k, v in op["options"].items()
                       if isinstance(v, (list, tuple))}
            getattr(tflite, f"{T}Start")(b)
            for k, v in op["options"].items():
                getattr(tflite, f"{T}Add{k}")(b, vectors.get(k, v))
            opts = getattr(tflite, f"{T}End")(b)
        custom = b.CreateByteVector(bytes(op["custom_options"])) if op["custom_options"] is not None else None
        ins, outs = ints(tflite.OperatorStartInputsVector, op["inputs"]), ints(tflite.OperatorStartOutputsVector, op["outputs"])
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, op["code"])
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        if opts is not None:
            tflite.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, op["options_type"]))
            tflite.OperatorAddBuiltinOptions(b, opts)
        if custom is not None:
            tflite.OperatorAddCustomOptions(b, custom)
        return tflite.OperatorEnd(b)

    @staticmethod
    def _quant(b, quant):
        scale, zero, axis = quant
        sv = (tflite.QuantizationParametersStartScaleVector(b, len(scale)),
              [b.PrependFloat32(float(v)) for v in reversed(scale)], b.EndVector())[2]
        zv = (tflite.QuantizationParametersStartZeroPointVector(b, len(zero)),
              [b.PrependInt64(int(v)) for v in reversed(zero)], b.EndVector())[2]
        tflite.QuantizationParametersStart(b)
        tflite.QuantizationParametersAddScale(b, sv)
        tflite.QuantizationParametersAddZeroPoint(b, zv)
        tflite.QuantizationParametersAddQuantizedDimension(b, axis)
        return tflite.QuantizationParametersEnd(b)

    @staticmethod
    def _sparsity(b, sp, ints, offsets):
        """``sp`` = (traversal_order, block_map, [("DENSE", size) | ("CSR", segments, indices, width)])."""
        order, block_map, levels = sp
        widths = {8: ("Uint8Vector", 3, b.PrependUint8), 16: ("Uint16Vector", 2, b.PrependUint16),
                  32: ("Int32Vector", 1, b.PrependInt32)}
        metas = []
        for level in levels:
            if level[0] == "DENSE":
                tflite.DimensionMetadataStart(b)
                tflite.DimensionMetadataAddFormat(b, 0)
                tflite.DimensionMetadataAddDenseSize(b, level[1])
                metas.append(tflite.DimensionMetadataEnd(b))
                continue
            _, seg, idx, width = level
            cls, kind, prepend = widths[width]
            made = []
            for values in (seg, idx):
                vv = (getattr(tflite, f"{cls}StartValuesVector")(b, len(values)),
                      [prepend(int(v)) for v in reversed(list(values))], b.EndVector())[2]
                getattr(tflite, f"{cls}Start")(b)
                getattr(tflite, f"{cls}AddValues")(b, vv)
                made.append(getattr(tflite, f"{cls}End")(b))
            tflite.DimensionMetadataStart(b)
            tflite.DimensionMetadataAddFormat(b, 1)
            tflite.DimensionMetadataAddArraySegmentsType(b, kind)
            tflite.DimensionMetadataAddArraySegments(b, made[0])
            tflite.DimensionMetadataAddArrayIndicesType(b, kind)
            tflite.DimensionMetadataAddArrayIndices(b, made[1])
            metas.append(tflite.DimensionMetadataEnd(b))
        tv = ints(tflite.SparsityParametersStartTraversalOrderVector, order)
        bv = ints(tflite.SparsityParametersStartBlockMapVector, block_map)
        dv = offsets(tflite.SparsityParametersStartDimMetadataVector, metas)
        tflite.SparsityParametersStart(b)
        tflite.SparsityParametersAddTraversalOrder(b, tv)
        tflite.SparsityParametersAddBlockMap(b, bv)
        tflite.SparsityParametersAddDimMetadata(b, dv)
        return tflite.SparsityParametersEnd(b)
