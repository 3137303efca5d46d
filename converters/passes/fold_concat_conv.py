"""Fold a channel Concat into the 1x1x1 Conv3D that reads it (a U-Net decoder's skip join).

    y = Conv3D(Concat(a, b, axis=1), [W_a | W_b], bias)   becomes   y = Conv3D(a, W_a, bias) + Conv3D(b, W_b)

The concatenated tensor (as large as its inputs together) is never built: at the peak, a, b and one
C_out-channel partial sum are live instead of a, b and a + b. The Add carries the conv's activation.
"""

from __future__ import annotations

import numpy as np

from edgert.ir.graph import Node, TensorInfo

from .fuse_reversible import _arena_bytes, _unique
from .rewrite import new_const, store_like, uses


def _candidates(graph):
    use = uses(graph)
    consumers = graph.consumers()
    found = []
    for concat in graph.nodes:
        if concat.op != "Concat" or concat.attrs.get("axis") != 1 or len(concat.inputs) < 2:
            continue
        y = concat.outputs[0]
        readers = consumers.get(y, [])
        if use.get(y, 0) != 1 or y in graph.outputs or len(readers) != 1:
            continue
        conv = readers[0]
        a = conv.attrs
        if (conv.op != "Conv3D" or conv.inputs[0] != y or a.get("group", 1) != 1 or a.get("in_offset")
                or a.get("in_channels") or a.get("strides", [1, 1, 1]) != [1, 1, 1] or any(a.get("pads", [0] * 6))
                or a.get("dilations", [1, 1, 1]) != [1, 1, 1] or conv.inputs[1] not in graph.consts
                or tuple(graph.tensors[conv.inputs[1]].shape[2:]) != (1, 1, 1)
                or any(n in graph.consts for n in concat.inputs)):
            continue
        found.append((concat, conv))
    return found


def fold_concat_conv(graph) -> int:
    found = _candidates(graph)
    if not found:
        return 0
    before = _arena_bytes(graph)
    for concat, conv in found:
        w = graph.const_value(conv.inputs[1]).astype(np.float32)
        bias = conv.inputs[2] if len(conv.inputs) > 2 else ""
        out = conv.outputs[0]
        out_info = graph.tensors[out]
        at = graph.nodes.index(conv)
        graph.nodes.remove(conv)
        graph.nodes.remove(concat)
        at -= 1  # the Concat came before the conv
        acts = {k: conv.attrs[k] for k in ("activation", "act_a", "act_b") if k in conv.attrs}
        c0, total, new_nodes = 0, None, []
        for k, part in enumerate(concat.inputs):
            c = graph.tensors[part].shape[1]
            wk = new_const(graph, f"{conv.name}/weight_{k}", store_like(graph, [conv.inputs[1]],
                                                                        np.ascontiguousarray(w[:, c0:c0 + c])))
            c0 += c
            t = _unique(graph, f"{conv.name}/part_{k}")
            graph.tensors[t] = TensorInfo(t, tuple(out_info.shape), "f32")
            new_nodes.append(Node(f"{conv.name}/part_{k}", "Conv3D", [part, wk] + ([bias] if k == 0 and bias else []),
                                  [t], {}))
            if total is None:
                total = t
                continue
            last = k == len(concat.inputs) - 1
            s = out if last else _unique(graph, f"{conv.name}/sum_{k}")
            if not last:
                graph.tensors[s] = TensorInfo(s, tuple(out_info.shape), "f32")
            new_nodes.append(Node(f"{conv.name}/sum_{k}" if not last else conv.name, "Add", [total, t], [s],
                                  acts if last else {}))
            total = s
        graph.nodes[at:at] = new_nodes
        graph.tensors.pop(concat.outputs[0], None)
    record = graph.metadata.setdefault("memory_reducers", {}).setdefault("concat_into_conv", {"blocks": 0})
    record["blocks"] += len(found)
    record.setdefault("arena_bytes_without", before)
    record["arena_bytes_with"] = _arena_bytes(graph)
    if record["arena_bytes_without"] is not None and record["arena_bytes_with"] is not None:
        record["saved_bytes"] = record["arena_bytes_without"] - record["arena_bytes_with"]
    return len(found)
