"""Helpers for converter tests: build small ONNX models, convert them, compare with onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from converters.convert import convert_graph
from edgert.runtime.session import Session
from tests.helpers import assert_close


def make_model(nodes, inputs, outputs, inits=(), opset=13, name="test"):
    """inputs: [(name, np dtype, shape)]; outputs: names (typed by ONNX's shape inference) or
    (name, shape) for f32 outputs that inference cannot type; inits: {name: array} or [(name, array)]."""
    inits = inits.items() if isinstance(inits, dict) else inits
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(dt)), shape)
         for n, dt, shape in inputs],
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) if isinstance(o, str)
         else helper.make_tensor_value_info(o[0], TensorProto.FLOAT, o[1]) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgert-tests")
    model.ir_version = min(model.ir_version, 8 if opset <= 17 else 9)
    # The checker wants typed outputs: let ONNX's inference fill them in.
    return onnx.shape_inference.infer_shapes(model)


def ort_run(model, feeds):
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def random_feeds(model, seed=0, shapes=None):
    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = (shapes or {}).get(vi.name) or [d.dim_value for d in vi.type.tensor_type.shape.dim]
        dt = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        feeds[vi.name] = (rng.uniform(-2, 2, shape).astype(dt) if dt.kind == "f"
                          else rng.integers(0, 3, shape).astype(dt))
    return feeds


def check_against_ort(model, feeds=None, input_shapes=None, rtol=1e-5, atol=1e-5, fp16=False):
    """Convert ``model`` (passes included), run it with edgert and with onnxruntime, and compare
    every graph output. Returns (edgert graph, edgert outputs)."""
    onnx.checker.check_model(model)
    feeds = feeds if feeds is not None else random_feeds(model, shapes=input_shapes)
    graph, _ = convert_graph(model, input_shapes=input_shapes, fp16=fp16)
    got = Session(graph, threads=1).run(feeds)
    want = ort_run(model, feeds)
    for name, value in want.items():
        assert_close(got[name], value, rtol=rtol, atol=atol, what=name)
    return graph, got
