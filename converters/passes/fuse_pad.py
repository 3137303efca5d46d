"""Fold a constant Pad of H and W into the Conv or MaxPool that reads it.

A zero Pad (mode constant, value 0) before a Conv adds to the Conv's pads. Before a MaxPool only a
pad value of -inf is equivalent (the pool's own pads never win the max), and only without ceil mode
(where the output size depends on where the padding sits) and while the pads stay smaller than the
window, as the IR requires.
"""

from __future__ import annotations

import math



def _folded_pads(reader, extra, value):
    """The reader's pads with the Pad's added, or None when that is not the same computation."""
    if reader.op == "Conv" and value == 0.0:
        return [a + b for a, b in zip(reader.attrs.get("pads", [0, 0, 0, 0]), extra)]
    if reader.op == "MaxPool" and value == -math.inf and not reader.attrs.get("ceil_mode", 0):
        new = [a + b for a, b in zip(reader.attrs.get("pads", [0, 0, 0, 0]), extra)]
        kh, kw = reader.attrs["kernel"]
        dh, dw = reader.attrs.get("dilations", [1, 1])
        extent = [(kh - 1) * dh + 1, (kw - 1) * dw + 1]
        return None if any(v >= extent[k % 2] for k, v in enumerate(new)) else new
    return None


def fuse_pad(graph) -> int:
    """Fold each such Pad into its readers when every reader takes it as its data input and can
    absorb it (MediaPipe's pose heads pad once for two depthwise convs)."""
    fused = 0
    for pad in list(graph.nodes):
        if pad.op != "Pad" or pad.attrs.get("mode", "constant") != "constant":
            continue
        y = pad.outputs[0]
        p = list(pad.attrs["pads"])
        if len(p) != 8 or any(p[d] or p[4 + d] for d in (0, 1)) or y in graph.outputs:
            continue
        readers = [n for n in graph.nodes if y in n.inputs]
        if not readers or any(n.inputs[0] != y or n.inputs.count(y) != 1 for n in readers):
            continue
        extra = [p[2], p[3], p[6], p[7]]  # [top, left, bottom, right]
        value = float(pad.attrs.get("value", 0.0))
        pads = [_folded_pads(n, extra, value) for n in readers]
        if any(new is None for new in pads):
            continue
        for reader, new in zip(readers, pads):
            reader.attrs = dict(reader.attrs, pads=new)
            reader.inputs[0] = pad.inputs[0]
        graph.nodes.remove(pad)
        graph.tensors.pop(y, None)
        fused += 1
    return fused
