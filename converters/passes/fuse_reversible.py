"""Run reversible (RevNet additive coupling) blocks in place on one buffer.

The ONNX pattern a PyTorch reversible block exports to::

    x1, x2 = Split(x, axis=1, halves)      # or two Slices of the channel axis
    y1 = Add(x1, F(x2))
    y2 = Add(x2, G(y1))
    y  = Concat(y1, y2, axis=1)

becomes::

    t = CouplingAdd(x, F(x2), offset=0)    # x1 += F(x2), over x's bytes when x dies here
    y = CouplingAdd(t, G(y1), offset=C/2)  # x2 += G(x1), over t's bytes

F's and G's Conv3D readers of x2 / y1 read their half of x / t through a channel window
(``in_offset``/``in_channels``) instead of a copy; other readers get a Slice of the half. The Split
and the Concat disappear, and the planner's in-place rule (``CouplingAdd.inplace``) keeps a whole
stack of blocks in one C-channel buffer: per block, the two half copies (Split) and the two new
halves plus the concatenated output (Add, Add, Concat) are never allocated.
"""

from __future__ import annotations

from edgert.ir.graph import Node, TensorInfo

WINDOW_READERS = ("Conv3D",)


def _unique(graph, base):
    name, k = base, 1
    while name in graph.tensors:
        name, k = f"{base}_{k}", k + 1
    return name


def _halves(graph, node):
    """(x, x1, x2, [nodes to remove]) when ``node`` splits x's channels into two equal halves."""
    if node.op == "Split" and node.attrs.get("axis") == 1 and len(node.outputs) == 2:
        x = node.inputs[0]
        split = list(node.attrs.get("split", []))
        if len(split) == 2 and split[0] == split[1]:
            return x, node.outputs[0], node.outputs[1], [node]
    return None


def _find_blocks(graph):
    consumers = graph.consumers()
    order = {id(n): k for k, n in enumerate(graph.nodes)}
    blocks = []
    for node in graph.nodes:
        found = _halves(graph, node)
        if not found:
            continue
        x, x1, x2, removed = found
        info = graph.tensors[x]
        if info.dtype != "f32" or len(info.shape) < 3 or x1 in graph.outputs or x2 in graph.outputs:
            continue
        half = info.shape[1] // 2
        readers1 = consumers.get(x1, [])
        if len(readers1) != 1 or readers1[0].op != "Add" or readers1[0].attrs.get("activation", "none") != "none":
            continue
        add_a = readers1[0]
        f_out = add_a.inputs[1] if add_a.inputs[0] == x1 else add_a.inputs[0]
        y1 = add_a.outputs[0]
        if f_out == x1 or graph.tensors[f_out].shape != graph.tensors[x1].shape or y1 in graph.outputs:
            continue
        add_b = [n for n in consumers.get(x2, []) if n.op == "Add" and n.attrs.get("activation", "none") == "none"
                 and any(c.op == "Concat" for c in consumers.get(n.outputs[0], []))]
        if len(add_b) != 1:
            continue
        add_b = add_b[0]
        g_out = add_b.inputs[1] if add_b.inputs[0] == x2 else add_b.inputs[0]
        y2 = add_b.outputs[0]
        if g_out == x2 or graph.tensors[g_out].shape != graph.tensors[x2].shape or y2 in graph.outputs:
            continue
        concat = consumers.get(y2, [])
        if len(concat) != 1 or concat[0].op != "Concat" or concat[0].inputs != [y1, y2] \
                or concat[0].attrs.get("axis") != 1:
            continue
        concat = concat[0]
        # x2's readers must all run before x2's half is overwritten (the second CouplingAdd).
        f_readers = [n for n in consumers.get(x2, []) if n is not add_b]
        if any(order[id(n)] > order[id(add_b)] for n in f_readers):
            continue
        if not (order[id(node)] < order[id(add_a)] < order[id(add_b)] < order[id(concat)]):
            continue
        blocks.append((node, x, x1, x2, half, add_a, f_out, y1, add_b, g_out, concat, removed))
    return blocks


def _read_half(graph, readers, name, source, offset, half, position):
    """Readers of half tensor ``name`` read channels [offset, offset + half) of ``source`` instead:
    Conv3D through its channel window, anything else through one Slice inserted at ``position()``.
    Returns whether ``name`` is still produced (by that Slice)."""
    sliced = False
    for reader in readers:
        if reader.op in WINDOW_READERS and reader.inputs[0] == name and name not in reader.inputs[1:] \
                and not reader.attrs.get("in_offset") and not reader.attrs.get("in_channels"):
            reader.inputs[0] = source
            reader.attrs["in_offset"] = offset
            reader.attrs["in_channels"] = half
        elif not sliced:
            shape = graph.tensors[source].shape
            starts, ends = [0] * len(shape), list(shape)
            starts[1], ends[1] = offset, offset + half
            graph.nodes.insert(position(), Node(f"{name}/half", "Slice", [source], [name],
                                                {"starts": starts, "ends": ends, "steps": [1] * len(shape)}))
            sliced = True
    return sliced


def _arena_bytes(graph):
    """The planned arena of ``graph`` (what ``edgert inspect`` reports), or None if it cannot be planned."""
    from edgert.errors import EdgertError
    from edgert.runtime.prepare import prepare_graph
    try:
        return prepare_graph(graph)[1].arena_bytes
    except EdgertError:
        return None


def fuse_reversible(graph) -> int:
    blocks = _find_blocks(graph)
    if not blocks:
        return 0
    before = _arena_bytes(graph)
    fused = _rewrite(graph, blocks)
    # Record what the rewrite saved, for ``edgert inspect`` (rounds accumulate: first before, last after).
    record = graph.metadata.setdefault("memory_reducers", {}).setdefault("reversible_in_place", {"blocks": 0})
    record["blocks"] += fused
    record.setdefault("arena_bytes_without", before)
    record["arena_bytes_with"] = _arena_bytes(graph)
    if record["arena_bytes_without"] is not None and record["arena_bytes_with"] is not None:
        record["saved_bytes"] = record["arena_bytes_without"] - record["arena_bytes_with"]
    return fused


def _rewrite(graph, blocks) -> int:
    fused = 0
    for block in blocks:
        split, x, x1, x2, half, add_a, f_out, y1, add_b, g_out, concat, removed = block
        consumers = graph.consumers()
        x2_readers = [n for n in consumers.get(x2, []) if n is not add_b]
        y1_readers = [n for n in consumers.get(y1, []) if n is not concat]
        y = concat.outputs[0]
        t = _unique(graph, f"{add_a.name}/coupled")
        graph.tensors[t] = TensorInfo(t, tuple(graph.tensors[x].shape), "f32")
        first = Node(add_a.name, "CouplingAdd", [x, f_out], [t], {"offset": 0})
        second = Node(add_b.name, "CouplingAdd", [t, g_out], [y], {"offset": half})
        graph.nodes[graph.nodes.index(add_a)] = first
        graph.nodes[graph.nodes.index(add_b)] = second
        split_at = graph.nodes.index(split)
        for n in removed:
            graph.nodes.remove(n)
        graph.nodes.remove(concat)
        kept_x2 = _read_half(graph, x2_readers, x2, x, half, half, lambda at=split_at: at)
        kept_y1 = _read_half(graph, y1_readers, y1, t, 0, half, lambda node=first: graph.nodes.index(node) + 1)
        for name, kept in ((x1, False), (x2, kept_x2), (y1, kept_y1), (add_b.outputs[0], False)):
            if not kept:
                graph.tensors.pop(name, None)
        fused += 1
    return fused
