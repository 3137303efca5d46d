"""Rewrite a ModelProto: each recognised codebook / key-value subgraph becomes one ``ai.edgert`` node.

Candidates come from ``onnx_codebook_match``. Each is verified numerically before it is kept: the
original nodes and the replacement are both evaluated on random inputs with onnx's reference
evaluator (the custom ops through edgert's own references), so a variant the matcher misreads
keeps its original graph. Nodes left without consumers are removed afterwards.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .onnx_codebook import DOMAIN, reference_ops
from .onnx_codebook_match import NoMatch, Selection, _Model, _need, match_cf, match_kv, score


def _subgraph(m, outputs, x):
    """The original nodes computing ``outputs`` from runtime tensor ``x`` and constants, as a model."""
    nodes, consts, seen, stack = [], {}, set(), list(outputs)
    while stack:
        name = stack.pop()
        if name in seen or name == x:
            continue
        seen.add(name)
        v = m.value(name)
        if v is not None:
            consts[name] = v
            continue
        n = m.producer.get(name)
        _need(n is not None, f"the subgraph depends on another runtime input '{name}'")
        if n not in nodes:
            nodes.append(n)
            stack.extend(i for i in n.input if i)
    order = {id(n): k for k, n in enumerate(m.model.graph.node)}
    nodes.sort(key=lambda n: order[id(n)])
    return nodes, consts


def _model(nodes, consts, x, x_shape, outputs, opsets):
    graph = helper.make_graph(
        nodes, "check", [helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])


def _replacement(m, fused, name, ids_needed):
    """ONNX nodes and initializers that recompute ``fused['out']`` (and the ids) from ``fused['x']``."""
    base = name.replace("/", "_") or "codebook"
    inits = {f"{base}/{k}": v for k, v in fused["consts"]}
    nodes, x = [], fused["x"]
    if fused["kind"] == "CodebookSnap":
        if fused["reshape_x"]:
            inits[f"{base}/x_shape"] = np.array([0] * fused["rows"] + [-1], np.int64)
            nodes.append(helper.make_node("Reshape", [x, f"{base}/x_shape"], [f"{base}/x"]))
            x = f"{base}/x"
        ins = [x] + [f"{base}/{k}" for k, _ in fused["consts"]]
        outs = [f"{base}/y"] + ([f"{base}/ids"] if ids_needed else [])
        nodes.append(helper.make_node("CodebookSnap", ins, outs, name=base, domain=DOMAIN, **fused["attrs"]))
        inits[f"{base}/y_shape"] = np.array([0] * fused["rows"] + fused["tail"], np.int64)
        nodes.append(helper.make_node("Reshape", [f"{base}/y", f"{base}/y_shape"], [fused["out"]]))
        if ids_needed:
            inits[f"{base}/ids_shape"] = np.array([0] * fused["rows"] + fused["id_tail"], np.int64)
            nodes.append(helper.make_node("Reshape", [f"{base}/ids", f"{base}/ids_shape"], [ids_needed]))
    else:
        keys, values, proj = (f"{base}/{k}" for k, _ in fused["consts"])
        outs = [f"{base}/v"] + ([f"{base}/ids"] if ids_needed else [])
        nodes.append(helper.make_node("KeyValueLookup", [x, proj, keys, values], outs, name=base, domain=DOMAIN,
                                      **fused["attrs"]))
        inits[f"{base}/v_shape"] = np.array([0, 0, -1], np.int64)  # [rows, C, 1, dv] -> [rows, C, dv]
        nodes.append(helper.make_node("Reshape", [f"{base}/v", f"{base}/v_shape"], [f"{base}/v3"]))
        nodes.append(helper.make_node("Transpose", [f"{base}/v3"], [fused["out"]], perm=[1, 0, 2]))
        if ids_needed:
            inits[f"{base}/ids_shape"] = np.array([0, 0], np.int64)
            nodes.append(helper.make_node("Reshape", [f"{base}/ids", f"{base}/ids_shape"], [f"{base}/ids2"]))
            nodes.append(helper.make_node("Transpose", [f"{base}/ids2"], [ids_needed], perm=[1, 0]))
    return nodes, inits


def _GatherElements():
    """onnx's reference GatherElements uses np.choose (at most 64 entries along the axis): this one does not."""
    from onnx.reference.op_run import OpRun

    def _run(self, data, indices, axis=None):
        axis = self.axis if axis is None else axis
        return (np.take_along_axis(data, np.where(indices < 0, indices + data.shape[axis], indices), axis=axis),)

    return type("GatherElements", (OpRun,), {"_run": _run})


def _verify(m, fused, nodes, inits, outputs):
    """Evaluate the original subgraph and the replacement on random inputs; True when they agree."""
    from onnx.reference import ReferenceEvaluator
    x = fused["x"]
    shape = m.shape(x)
    _need(shape is not None and None not in shape, "static input shape (pass input_shapes)")
    orig_nodes, consts = _subgraph(m, outputs, x)
    opsets = dict(m.opsets, **{DOMAIN: 1})
    try:
        original = ReferenceEvaluator(_model(orig_nodes, consts, x, shape, outputs, m.opsets), new_ops=[_GatherElements()])
        replaced = ReferenceEvaluator(_model(nodes, inits, x, shape, outputs, opsets), new_ops=reference_ops())
    except Exception as exc:  # noqa: BLE001  (the evaluator cannot load an original op: keep the graph)
        raise NoMatch(f"cannot evaluate the subgraph ({type(exc).__name__})") from None
    for seed in range(3):  # a near-tie in one random draw may swap two codes; a wrong rewrite never agrees
        feed = {x: np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}
        try:
            want, got = original.run(None, feed), replaced.run(None, feed)
        except Exception as exc:  # noqa: BLE001  (any evaluation failure keeps the original graph)
            raise NoMatch(f"cannot evaluate the subgraph ({type(exc).__name__}: {exc})") from None
        if all(a.shape == b.shape and (np.array_equal(a, b) if a.dtype.kind in "iu" else
                                       np.allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(a).max(initial=0))))
               for a, b in zip(want, got)):
            return True
    return False


def _candidate(m, node):
    """(fused description, downstream nodes to remove): a codebook snap if the ids gather the scored
    codes back, else a key-value lookup."""
    sel = Selection(m, node)
    try:
        used = [node]
        core, metric = score(m, sel, [])
        return match_cf(m, sel, core, metric, used), used
    except NoMatch:
        used = [node]
        core, metric = score(m, sel, [], kv=True)
        return match_kv(m, sel, core, metric, used), used


def fuse(model, input_shapes=None):
    """See ``converters.onnx_codebook.fuse_codebook_patterns``."""
    m = _Model(model, input_shapes)
    removed, new_nodes, new_inits, report = set(), {}, {}, []
    for node in model.graph.node:
        if node.op_type not in ("TopK", "ArgMax", "ArgMin") or node.domain not in ("", "ai.onnx") or id(node) in removed:
            continue
        try:
            fused, used = _candidate(m, node)
            ids = [o for u in used for o in u.output if o and o != fused["out"]]
            inside = {id(u) for u in used}
            leaks = [o for o in ids if o in m.outputs or any(id(c) not in inside for c in m.users(o))]
            _need(all(o == node.output[-1] for o in leaks), "an intermediate tensor is used elsewhere")
            _need(not inside & removed, "overlaps another fused layer")
            nodes, inits = _replacement(m, fused, node.name or fused["out"], leaks[0] if leaks else None)
            _need(_verify(m, fused, nodes, inits, [fused["out"]] + leaks), "numerical check failed")
        except NoMatch:
            continue
        removed |= inside
        last = max(k for k, n in enumerate(model.graph.node) if id(n) in inside)
        new_nodes[last] = nodes
        new_inits.update(inits)
        report.append(f"{fused['kind']} {fused['attrs']} replaces {len(used)} nodes ending at '{fused['out']}'")
    if not report:
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    for k, n in enumerate(model.graph.node):
        if id(n) not in removed:
            out.graph.node.append(n)
        out.graph.node.extend(new_nodes.get(k, []))
    out.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in new_inits.items())
    if DOMAIN not in {imp.domain for imp in out.opset_import}:
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    _remove_dead(out)
    produced = {i.name for i in out.graph.input} | {i.name for i in out.graph.initializer} | \
        {o for n in out.graph.node for o in n.output}
    for n in list(out.graph.node):  # e.g. a Shape of the ids, kept alive by a remaining consumer
        if any(i and i not in produced for i in n.input):
            values = [m.value(o) for o in n.output if o]
            if any(v is None for v in values):
                return model, [f"fusion skipped: '{n.name}' still reads a tensor the rewrite removed"]
            out.graph.node.remove(n)
            out.graph.initializer.extend(numpy_helper.from_array(v, o) for o, v in zip(n.output, values))
    _remove_dead(out)
    return out, report


def _remove_dead(model):
    g = model.graph
    while True:
        used = {i for n in g.node for i in n.input if i} | {o.name for o in g.output}
        keep = [n for n in g.node if any(o in used for o in n.output if o)]
        if len(keep) == len(g.node):
            break
        del g.node[:]
        g.node.extend(keep)
    names = {i for n in g.node for i in n.input if i} | {o.name for o in g.output}
    inits = [i for i in g.initializer if i.name in names]
    del g.initializer[:]
    g.initializer.extend(inits)
