"""Which tensors the runtime keeps channel-blocked instead of NCHW, decided once in prepare.

In the blocked layout (NCHWc, onnxruntime's name; ``kernels/blocked.py``) a [N, C, H, W] tensor is
stored as [N][ceil(C/VW)][H][W][VW]: VW channels of one pixel are one SIMD vector. On it a 1x1 conv
is a register-tiled product that reads its input in place (no panel packing, no padding of small
planes up to whole panels), and a depthwise conv computes VW channels per vector with no
transposes, which is where the NCHW kernels lose most to onnxruntime on 7x7 and 14x14 maps.

The rule, per node: it runs blocked when its op can (``blocked_kind``) and a neighbour can too (the
producer of one of its data inputs, or a consumer of its output): a lone blocked node would pay two
reorders for nothing. Its output ``t`` is stored blocked as ``t#blocked``; if plain nodes or the
caller also read ``t``, a ``FromBlocked`` node right after the producer writes the plain copy. A
plain tensor read by blocked nodes gets a ``ToBlocked`` node before its first blocked reader. A
general conv (the network's stem) reads a plain input directly, so a model starting with
stem -> depthwise -> 1x1 needs no reorder at its entrance.

The graph the file holds is not changed: prepare runs on an execution copy (this module's
``LayoutPlan``) whose tensor table has the blocked tensors' physical shapes, which size the arena.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import GraphError
from ..ir.graph import Node, TensorInfo

SUFFIX = "#blocked"
MODES = ("auto", "blocked", "nchw")
DEFAULT_MODE = "auto"


def blocked_name(name: str) -> str:
    return name + SUFFIX


def blocked_shape(shape, vw: int) -> tuple:
    n, c, h, w = shape
    return (n, -(-c // vw), h, w, vw)


def _is_const(graph, name) -> bool:
    return bool(name) and name in graph.consts


# Kinds whose input is blocked but whose output is plain (a head's NHWC transpose): they end a region.
EXIT_KINDS = ("to_nhwc",)


def blocked_kind(node, attrs, ins, graph) -> str | None:
    """What the blocked kernels can run this node as ('conv1x1', 'dwconv', 'conv', 'add', 'gap',
    'prelu', 'maxpool', 'padc', 'scale', 'to_nhwc', 'resize'), or None. Only 4-D f32 tensors; conv weights
    and bias must be constants."""
    if any(t is not None and (t.dtype != "f32") for t in ins):
        return None
    x = ins[0]
    if x is None or len(x.shape) != 4:
        return None
    op = node.op
    if op == "Conv":
        if not _is_const(graph, node.inputs[1]):
            return None
        if len(node.inputs) > 2 and node.inputs[2] and not _is_const(graph, node.inputs[2]):
            return None
        residual = len(node.inputs) > 3 and bool(node.inputs[3])
        C, (M, Cg, kh, kw) = x.shape[1], ins[1].shape
        G = attrs["group"]
        if G == C and Cg == 1 and M == C and C > 1:
            if residual or attrs["dilations"] != [1, 1]:
                return None
            return "dwconv"
        if G != 1:
            return None
        if kh == kw == 1 and attrs["strides"] == [1, 1] and not any(attrs["pads"]):
            return "conv1x1"
        if residual or (kh, kw) == tuple(x.shape[2:]):  # a whole-input head is a GEMV in NCHW
            return None
        return "conv"
    if op == "Add" and attrs["activation"] in ("none", "relu", "clip"):
        a, b = ins
        if tuple(a.shape) == tuple(b.shape) and not any(_is_const(graph, n) for n in node.inputs):
            return "add"
        return None
    if op == "GlobalAveragePool":
        return "gap"
    if op == "AveragePool" and tuple(attrs["kernel"]) == tuple(x.shape[2:]) and not any(attrs["pads"]):
        return "gap"  # a window as large as the input (TFLite's MEAN over H, W)
    if op == "MaxPool":
        return "maxpool"
    if op == "Pad" and attrs.get("mode") == "constant" and float(attrs.get("value", 0.0)) == 0.0 and \
            len(node.inputs) == 1 and [int(v) for i, v in enumerate(attrs["pads"]) if i != 5] == [0] * 7:
        return "padc"  # zero channels appended (BlazeNet's residual widening)
    if op == "Mul" and attrs["activation"] == "none" and not any(_is_const(graph, n) for n in node.inputs):
        a, b = ins
        if len(b.shape) == 4 and tuple(b.shape) == (a.shape[0], a.shape[1], 1, 1):
            return "scale"
        return None
    if op == "Transpose" and list(attrs["perm"]) == [0, 2, 3, 1]:
        return "to_nhwc"
    if op == "Resize" and attrs["mode"] in ("linear", "nearest") and len(node.inputs) == 1:
        from ..ops.resize import resolve_scales_sizes
        _, out_shape = resolve_scales_sizes(attrs, x.shape)
        if tuple(out_shape[:2]) == tuple(x.shape[:2]):
            return "resize"  # spatial only: every channel is resized alike
    if op == "PRelu":
        slope = ins[1]
        if _is_const(graph, node.inputs[1]) and slope.size in (1, x.shape[1]) and \
                (len(slope.shape) < 3 or slope.size == 1 or tuple(slope.shape[-3:]) == (x.shape[1], 1, 1)):
            return "prelu"
        return None
    return None


def data_inputs(kind: str, node) -> list:
    """Indices of the node's inputs that are activations in the node's layout (blocked when it is)."""
    if kind in ("conv1x1",):
        return [0, 3] if len(node.inputs) > 3 and node.inputs[3] else [0]
    if kind == "add":
        return [0, 1]
    if kind == "prelu":
        return [0, 2] if len(node.inputs) > 2 and node.inputs[2] else [0]
    if kind == "scale":
        return [0, 1]
    return [0]


@dataclass
class LayoutPlan:
    """The execution copy of the graph: nodes (with reorders), and their logical inputs for prepare."""

    steps: list  # [(node, opdef, attrs, logical input infos)] in execution order
    tensors: dict  # name -> TensorInfo with the physical shape (blocked tensors are 5-D)
    logical: dict  # name -> TensorInfo with the logical NCHW shape, for every tensor in ``tensors``
    blocked: set = field(default_factory=set)  # names of blocked tensors
    kinds: dict = field(default_factory=dict)  # node name -> blocked kind, for nodes that run blocked
    reorders: int = 0
    block: int = 0  # channels per block (the vector width) when any tensor is blocked
    why_plain: dict = field(default_factory=dict)  # node name -> why a node that could run blocked does not
    fused: int = 0  # PRelu nodes folded into the blocked conv before them (fuse_prelu)


# A region (nodes connected through blocked tensors) stays blocked when it has at least this many
# nodes per reorder it needs: a reorder costs about what one small blocked node saves.
NODES_PER_REORDER = 3


def _worth_it(run_blocked, kind, inferred, producer, readers, outputs, why_plain) -> set:
    """The nodes of the regions that pay for their reorders (NODES_PER_REORDER); why the others
    stay NCHW goes into ``why_plain``."""
    region = {n: n for n in run_blocked}

    def find(n):
        while region[n] != n:
            region[n] = region[region[n]]
            n = region[n]
        return n

    for node, *_ in inferred:
        if node.name not in run_blocked:
            continue
        for i in data_inputs(kind[node.name], node):
            p = producer.get(node.inputs[i])
            if p is not None and p.name in run_blocked:
                region[find(node.name)] = find(p.name)
    nodes, reorders, entries = {}, {}, set()
    for node, *_ in inferred:
        if node.name not in run_blocked:
            continue
        r, k = find(node.name), kind[node.name]
        nodes[r] = nodes.get(r, 0) + 1
        for i in data_inputs(k, node):
            p = producer.get(node.inputs[i])
            if (p is None or p.name not in run_blocked) and not (k == "conv" and i == 0) and \
                    (r, node.inputs[i]) not in entries:
                entries.add((r, node.inputs[i]))
                reorders[r] = reorders.get(r, 0) + 1
        out = node.outputs[0]
        if k not in EXIT_KINDS and (out in outputs or any(x.name not in run_blocked for x in readers.get(out, []))):
            reorders[r] = reorders.get(r, 0) + 1
    keep = {r for r in nodes if nodes[r] >= NODES_PER_REORDER * reorders.get(r, 0)}
    for n in run_blocked:
        r = find(n)
        if r not in keep:
            why_plain[n] = (f"its channel-blocked region of {nodes[r]} nodes would need {reorders[r]} reorders "
                            f"(blocked from {NODES_PER_REORDER} nodes per reorder)")
    return {n for n in run_blocked if find(n) in keep}


def plan_layout(graph, inferred, mode: str, vw: int, file=None) -> LayoutPlan:
    """``inferred``: infer_graph's [(node, opdef, attrs, ins)] of ``graph``."""
    from ..ops import get_op
    if mode not in MODES:
        raise GraphError(f"unknown layout {mode!r}; use one of {', '.join(MODES)}", file=file)
    tensors = dict(graph.tensors)
    logical = dict(graph.tensors)
    plain = LayoutPlan([tuple(x) for x in inferred], tensors, logical)
    if mode == "nchw":
        return plain
    kind = {}
    for node, _opdef, attrs, ins in inferred:
        k = blocked_kind(node, attrs, ins, graph)
        if k is not None:
            kind[node.name] = k
    producer = {out: node for node, *_ in inferred for out in node.outputs}
    readers: dict = {}
    for node, *_ in inferred:
        for name in node.inputs:
            if name:
                readers.setdefault(name, []).append(node)
    run_blocked, why_plain = set(), {}
    for node, *_ in inferred:
        k = kind.get(node.name)
        if k is None:
            continue
        ups = [producer.get(node.inputs[i]) for i in data_inputs(k, node)]
        downs = [] if k in EXIT_KINDS else readers.get(node.outputs[0], [])
        if (mode == "blocked" and k not in EXIT_KINDS) or any(p is not None and p.name in kind for p in ups) or \
                any(r.name in kind and kind[r.name] not in EXIT_KINDS for r in downs):
            run_blocked.add(node.name)
        else:
            why_plain[node.name] = "no neighbour can run channel-blocked (two reorders would cost more than it saves)"
    if mode == "auto":
        run_blocked = _worth_it(run_blocked, kind, inferred, producer, readers, set(graph.outputs), why_plain)
    plain.why_plain = why_plain
    if not run_blocked:
        return plain

    def is_blocked_source(name):
        p = producer.get(name)
        return p is not None and p.name in run_blocked

    outputs = set(graph.outputs)
    steps, blocked, made = [], set(), set()
    to_op, from_op = get_op("ToBlocked"), get_op("FromBlocked")
    reorders = 0

    def add_blocked_tensor(name):
        b = blocked_name(name)
        tensors[b] = TensorInfo(b, blocked_shape(graph.tensors[name].shape, vw), "f32")
        logical[b] = TensorInfo(b, tuple(graph.tensors[name].shape), "f32")
        blocked.add(b)
        return b

    for node, opdef, attrs, ins in inferred:
        if node.name not in run_blocked:
            steps.append((node, opdef, attrs, ins))
            continue
        k = kind[node.name]
        new_inputs = list(node.inputs)
        for i in data_inputs(k, node):
            name = node.inputs[i]
            if is_blocked_source(name):
                new_inputs[i] = blocked_name(name)
            elif k == "conv" and i == 0:
                pass  # the general conv reads a plain input as is (a stem)
            else:
                b = blocked_name(name)
                if b not in made:
                    add_blocked_tensor(name)
                    made.add(b)
                    reorders += 1
                    to_node = Node(f"{name}#to_blocked", "ToBlocked", [name], [b], {"block": vw})
                    steps.append((to_node, to_op, to_op.resolve_attrs(to_node), [graph.tensors[name]]))
                new_inputs[i] = b
        out = node.outputs[0]
        if k in EXIT_KINDS:
            steps.append((Node(node.name, node.op, new_inputs, list(node.outputs), node.attrs), opdef, attrs, ins))
            continue
        b_out = add_blocked_tensor(out)
        steps.append((Node(node.name, node.op, new_inputs, [b_out] + list(node.outputs[1:]), node.attrs),
                      opdef, attrs, ins))
        plain_readers = [r for r in readers.get(out, []) if r.name not in run_blocked]
        if out in outputs or plain_readers:
            reorders += 1
            from_node = Node(f"{out}#from_blocked", "FromBlocked", [b_out], [out],
                             {"channels": int(graph.tensors[out].shape[1])})
            steps.append((from_node, from_op, from_op.resolve_attrs(from_node), [logical[b_out]]))
    kinds = {n: kind[n] for n in run_blocked}
    fused = fuse_prelu(steps, kinds)
    return LayoutPlan(steps, tensors, logical, blocked, kinds, reorders, vw, why_plain=why_plain, fused=fused)


# Blocked conv kinds whose tiles apply a per-channel PRelu (kernels/blocked.py, PRELU).
PRELU_INTO = ("conv1x1", "conv")


def fuse_prelu(steps, kinds) -> int:
    """Fold each blocked PRelu into the blocked conv whose output only it reads: each output block of
    a register tile goes through the slope while it is in L1, instead of a second pass over memory
    (a separate node), which on two threads
    also means one parallel region instead of a parallel conv and a serial PRelu whose input half
    sits in the other core's cache (BlazeNet's conv -> PRelu pairs: 26 of palm_detection's 97 steps).
    PRelu(X + R) with X the conv's output moves R into a 1x1 conv as its residual (added before the
    activation, as the fused Add was). The fused conv takes the PRelu's place in ``steps`` (its inputs
    exist earlier still) with activation 'prelu' and the slope as a 5th input; ``kinds`` loses the
    PRelu. Returns the number fused."""
    producer = {out: i for i, (node, *_r) in enumerate(steps) for out in node.outputs}
    readers: dict = {}
    for i, (node, *_r) in enumerate(steps):
        for name in node.inputs:
            if name:
                readers.setdefault(name, []).append(i)
    gone = set()
    for pi, (pnode, _popdef, _pattrs, pins) in enumerate(steps):
        if kinds.get(pnode.name) != "prelu":
            continue
        has_r = len(pnode.inputs) > 2 and bool(pnode.inputs[2])
        for slot in ((0, 2) if has_r else (0,)):
            ci = producer.get(pnode.inputs[slot])
            if ci is None or ci in gone:
                continue
            cnode, copdef, cattrs, cins = steps[ci]
            k = kinds.get(cnode.name)
            conv_r = len(cnode.inputs) > 3 and bool(cnode.inputs[3])
            if (cnode.op != "Conv" or k not in PRELU_INTO or cattrs["activation"] != "none"
                    or readers.get(pnode.inputs[slot]) != [pi] or (has_r and (k != "conv1x1" or conv_r))):
                continue
            other = 2 - slot
            r_name, r_info = ((cnode.inputs[3], cins[3]) if conv_r else
                              (pnode.inputs[other], pins[other]) if has_r else ("", None))
            bias = cnode.inputs[2] if len(cnode.inputs) > 2 else ""
            inputs = [cnode.inputs[0], cnode.inputs[1], bias, r_name, pnode.inputs[1]]
            ins = [cins[0], cins[1], cins[2] if len(cins) > 2 else None, r_info, pins[1]]
            node = Node(cnode.name, "Conv", inputs, list(pnode.outputs), dict(cnode.attrs, activation="prelu"))
            steps[pi] = (node, copdef, dict(cattrs, activation="prelu"), ins)
            gone.add(ci)
            del kinds[pnode.name]
            break
    steps[:] = [s for i, s in enumerate(steps) if i not in gone]
    return len(gone)
