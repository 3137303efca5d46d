"""Fuse a reversible block's MBConv branch into its coupling add, run over depth slabs.

    e = Conv3D 1x1x1 (x window) [-> GroupNorm] -> act1;  d = depthwise Conv3D k^3 'same' -> act2;
    f = Conv3D 1x1x1 (no activation);  y = CouplingAdd(x, f)

becomes one ``MBConv3DCouple`` node: the expanded activations (2 x expansion x C/2 channels of the
whole volume, the peak of a reversible U-Net level) shrink to a ring of k depth planes, and the
output overwrites x in place. Every intermediate must be read only by the next node of the chain.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.graph import Node

from .fuse_reversible import _arena_bytes
from .rewrite import new_const, uses


def _const(graph, name):
    return graph.const_value(name).astype(np.float32) if name else None


def _plain_pointwise(node):
    a = node.attrs
    return (node.op == "Conv3D" and a.get("group", 1) == 1 and a.get("strides", [1, 1, 1]) == [1, 1, 1]
            and not any(a.get("pads", [0] * 6)) and a.get("dilations", [1, 1, 1]) == [1, 1, 1])


def _match(graph, cadd, producers, use):
    x, f = cadd.inputs
    private = lambda t: use.get(t, 0) == 1 and t not in graph.outputs
    proj = producers.get(f)
    if proj is None or not private(f) or not _plain_pointwise(proj) or proj.attrs.get("activation", "none") != "none" \
            or proj.attrs.get("in_offset") or proj.attrs.get("in_channels"):
        return None
    dw = producers.get(proj.inputs[0])
    if dw is None or dw.op != "Conv3D" or not private(proj.inputs[0]):
        return None
    E = graph.tensors[dw.outputs[0]].shape[1]
    wd = graph.tensors[dw.inputs[1]].shape
    k = wd[2]
    if (dw.attrs.get("group") != E or tuple(wd) != (E, 1, k, k, k) or k % 2 == 0
            or dw.attrs.get("strides", [1, 1, 1]) != [1, 1, 1] or dw.attrs.get("dilations", [1, 1, 1]) != [1, 1, 1]
            or dw.attrs.get("pads") != [k // 2] * 6 or dw.attrs.get("in_offset") or dw.attrs.get("in_channels")):
        return None
    prev = producers.get(dw.inputs[0])
    if prev is None or not private(dw.inputs[0]):
        return None
    norm = None
    if prev.op == "GroupNorm":
        norm, prev = prev, producers.get(prev.inputs[0])
        if prev is None or not private(norm.inputs[0]) or prev.attrs.get("activation", "none") != "none":
            return None
    expand = prev
    if not _plain_pointwise(expand) or expand.inputs[0] != x:
        return None
    if any(n and n not in graph.consts for node in (expand, dw, proj) + ((norm,) if norm else ())
           for n in node.inputs[1:]):
        return None
    return expand, norm, dw, proj


def fuse_mbconv(graph) -> int:
    producers = graph.producers()
    use = uses(graph)
    matches = [(n, m) for n in graph.nodes if n.op == "CouplingAdd"
               for m in [_match(graph, n, producers, use)] if m]
    if not matches:
        return 0
    before = _arena_bytes(graph)
    for cadd, (expand, norm, dw, proj) in matches:
        E = graph.tensors[expand.inputs[1]].shape[0]
        Cout = graph.tensors[proj.inputs[1]].shape[0]
        act_src = norm if norm else expand
        zeros_e = np.zeros(E, np.float32)

        def param(node, i, default, base, cadd=cadd):
            name = node.inputs[i] if node is not None and len(node.inputs) > i else ""
            return name if name else new_const(graph, f"{cadd.name}/{base}", default)

        inputs = [cadd.inputs[0], expand.inputs[1], param(expand, 2, zeros_e, "expand_bias"),
                  param(norm, 1, np.ones(E, np.float32), "norm_scale"), param(norm, 2, zeros_e, "norm_bias"),
                  dw.inputs[1], param(dw, 2, zeros_e, "dw_bias"), proj.inputs[1],
                  param(proj, 2, np.zeros(Cout, np.float32), "project_bias")]
        attrs = {"in_offset": int(expand.attrs.get("in_offset", 0)), "out_offset": int(cadd.attrs.get("offset", 0)),
                 "norm_groups": int(norm.attrs["groups"]) if norm else 0,
                 "epsilon": float(norm.attrs.get("epsilon", 1e-5)) if norm else 1e-5,
                 "act1": act_src.attrs.get("activation", "none"), "act1_a": float(act_src.attrs.get("act_a", 0.0)),
                 "act1_b": float(act_src.attrs.get("act_b", 0.0)), "act2": dw.attrs.get("activation", "none"),
                 "act2_a": float(dw.attrs.get("act_a", 0.0)), "act2_b": float(dw.attrs.get("act_b", 0.0))}
        if not expand.attrs.get("in_channels"):
            attrs["in_offset"] = 0
        graph.nodes[graph.nodes.index(cadd)] = Node(cadd.name, "MBConv3DCouple", inputs, list(cadd.outputs), attrs)
        for node in (expand, norm, dw, proj):
            if node is not None:
                graph.nodes.remove(node)
                graph.tensors.pop(node.outputs[0], None)
    record = graph.metadata.setdefault("memory_reducers", {}).setdefault("mbconv_depth_slabs", {"blocks": 0})
    record["blocks"] += len(matches)
    record.setdefault("arena_bytes_without", before)
    record["arena_bytes_with"] = _arena_bytes(graph)
    if record["arena_bytes_without"] is not None and record["arena_bytes_with"] is not None:
        record["saved_bytes"] = record["arena_bytes_without"] - record["arena_bytes_with"]
    return len(matches)
