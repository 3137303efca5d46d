"""Shared test helpers: build a one-node edgert graph, run it with kernels and with the reference."""

from __future__ import annotations

import numpy as np

from converters.builder import GraphBuilder
from edgert.runtime.reference import run_reference
from edgert.runtime.session import Session


def single_op_graph(op, inputs, attrs=None, consts=(), n_outputs=1, fp16_consts=False):
    """A graph with one node. ``inputs``: list of (name, array) in the op's input order; a name of
    '' marks an omitted optional input. Names listed in ``consts`` become constants, the rest graph inputs."""
    b = GraphBuilder()
    names = []
    for name, value in inputs:
        if not name:
            names.append("")
        elif name in consts:
            names.append(b.add_const(name, value, dtype="f16" if fp16_consts else None))
        else:
            names.append(b.add_input(name, value.shape, _dtype(value)))
    outs = [f"out{k}" for k in range(n_outputs)]
    b.add_node(op, names, outs, attrs or {}, name=f"the_{op.lower()}")
    for o in outs:
        b.add_output(o)
    return b.finish()


def _dtype(value):
    from edgert.dtypes import from_numpy
    return from_numpy(np.asarray(value).dtype)


def run_both(op, inputs, attrs=None, consts=(), n_outputs=1, threads=1, fp16_consts=False):
    """Run one op with edgert's chosen kernel and with its numpy reference.

    Returns (kernel outputs, reference outputs, session) with outputs as lists in output order.
    """
    graph = single_op_graph(op, inputs, attrs, consts, n_outputs, fp16_consts)
    feeds = {name: value for name, value in inputs if name and name not in consts}
    sess = Session(graph, threads=threads)
    got = sess.run(feeds)
    want = run_reference(graph, feeds)
    return [got[o] for o in graph.outputs], [want[o] for o in graph.outputs], sess


def assert_close(got, want, rtol=1e-5, atol=1e-5, what=""):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if got.size:
        scale = max(1.0, float(np.max(np.abs(want))))
        err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
        assert err <= atol * scale + rtol * scale, f"{what}: max abs err {err:.3g} (scale {scale:.3g})"


def onnx_reference(op_type, inputs, attrs=None, n_outputs=1, opset=18, domain=""):
    """Evaluate one ONNX node with onnx.reference.ReferenceEvaluator (the peer oracle)."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator
    names = [f"i{k}" if x is not None else "" for k, x in enumerate(inputs)]
    outs = [f"o{k}" for k in range(n_outputs)]
    node = helper.make_node(op_type, names, outs, domain=domain, **(attrs or {}))
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(x).dtype), np.shape(x))
         for n, x in zip(names, inputs) if n],
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, opset)])
    feeds = {n: np.asarray(x) for n, x in zip(names, inputs) if n}
    return ReferenceEvaluator(model).run(None, feeds)
