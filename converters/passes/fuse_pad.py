"""Fold a constant Pad of H and W into the Conv or MaxPool that reads it.

A zero Pad (mode constant, value 0) before a Conv adds to the Conv's pads. Before a MaxPool only a
pad value of -inf is equivalent (the pool's own pads never win the max), and only without ceil mode
(where the output size depends on where the padding sits) and while the pads stay smaller than the
window, as the IR requires.
"""

from __future__ import annotations

import math

from .rewrite import is_private, uses


def fuse_pad(graph) -> int:
    fused = 0
    for pad in list(graph.nodes):
        if pad.op != "Pad" or pad.attrs.get("mode", "constant") != "constant":
            continue
        y = pad.outputs[0]
        p = list(pad.attrs["pads"])
        if len(p) != 8 or any(p[d] or p[4 + d] for d in (0, 1)) or not is_private(graph, y, uses(graph)):
            continue
        reader = next(n for n in graph.nodes if y in n.inputs)
        if reader.inputs[0] != y:
            continue
        extra = [p[2], p[3], p[6], p[7]]  # [top, left, bottom, right]
        value = float(pad.attrs.get("value", 0.0))
        if reader.op == "Conv" and value == 0.0:
            new = [a + b for a, b in zip(reader.attrs.get("pads", [0, 0, 0, 0]), extra)]
        elif reader.op == "MaxPool" and value == -math.inf and not reader.attrs.get("ceil_mode", 0):
            new = [a + b for a, b in zip(reader.attrs.get("pads", [0, 0, 0, 0]), extra)]
            kh, kw = reader.attrs["kernel"]
            dh, dw = reader.attrs.get("dilations", [1, 1])
            extent = [(kh - 1) * dh + 1, (kw - 1) * dw + 1]
            if any(v >= extent[k % 2] for k, v in enumerate(new)):
                continue
        else:
            continue
        reader.attrs = dict(reader.attrs, pads=new)
        reader.inputs[0] = pad.inputs[0]
        graph.nodes.remove(pad)
        graph.tensors.pop(y, None)
        fused += 1
    return fused
