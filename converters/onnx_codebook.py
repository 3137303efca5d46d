"""ONNX side of the codebook layers: builders for the ``ai.edgert`` custom ops, LayerNormalization,
reference implementations of the custom ops for onnx's evaluator, and the plain-op fuser entry.

Custom-domain ops (domain ``ai.edgert``, version 1; see docs/IR.md and the notes §3.3)::

    CodebookSnap(X[..., G*dg], codebook[G, K, dg] or [K, dg], ln_scale?, ln_bias?, override?, disable_mask?)
        -> Y[..., G*dg], ids[..., G, k]?        attrs k, metric, num_groups, pre_norm, ln_epsilon, reduce, tie
    KeyValueLookup(Z[..., D], proj[C, D, dk]?, keys[C, M, dk], values[C, M, dv])
        -> V, ids[..., C, topk]?, dist?          attrs topk, metric, split, combine, tie

``override``/``disable_mask`` runtime inputs and the ``scores`` output are not converted: edgert
does interventions at run time (``edgert.interventions``) without graph inputs.

Plain-op exports (TopK/ArgMax + Gather + ReduceMean, ...) are recognised by
``fuse_codebook_patterns`` (``onnx_codebook_match`` reads the patterns, ``onnx_codebook_fuse``
verifies and rewrites), an ONNX-level rewrite that runs on the ModelProto before conversion and
replaces each recognised subgraph by the custom op above. It works on ONNX because most of the
plain ops (Einsum, TopK, ArgMax, GatherElements, ReduceL2) have no IR equivalent.

Hooks (the loader owns them): ``CUSTOM_OPS`` for nodes of domain ``DOMAIN``, ``STANDARD_OPS`` for
the default domain.
"""

from __future__ import annotations

import numpy as np

import edgert.ops.codebook  # noqa: F401  (registers the IR ops even before edgert.ops imports them itself)

DOMAIN = "ai.edgert"
SNAP_ATTRS = {"k": None, "metric": "inner_product", "num_groups": 0, "pre_norm": "layernorm", "ln_epsilon": 1e-5,
              "reduce": "mean", "tie": "lower_index"}
KV_ATTRS = {"topk": 1, "metric": "sqeuclidean", "split": None, "combine": "none", "tie": "lower_index"}


def _unsupported(message):
    from .onnx.context import Unsupported
    return Unsupported(message)


def _attrs(ctx, spec):
    return {key: ctx.attr(key, default) for key, default in spec.items()}


def _const_name(ctx, name, value, suffix):
    """An ONNX name holding ``value`` (a reshaped copy of constant ``name``, keeping its fp16 origin)."""
    new = f"{name}#{suffix}"
    ctx.set_const(new, value, half=ctx.consts[name].dtype == np.float16 or name in ctx.half)
    return new


# --- builders (converters.onnx ``ctx`` protocol) ------------------------------------------------------
def CodebookSnap(ctx, node):
    if ctx.inp(4) or ctx.inp(5):
        raise _unsupported("runtime 'override'/'disable_mask' inputs: edgert applies interventions at run time "
                           "(edgert.interventions) instead")
    if ctx.out(2):
        raise _unsupported("the 'scores' output")
    attrs = _attrs(ctx, SNAP_ATTRS)
    if attrs["k"] is None:
        ctx.fail("attribute 'k' is required")
    cb = ctx.inp(1)
    C = ctx.const(cb, "codebook")
    if C.ndim == 2:
        cb = _const_name(ctx, cb, C[None], "grouped")
        C = C[None]
    if C.ndim != 3:
        ctx.fail(f"codebook must be [K, dim] or [groups, K, dim], got {list(C.shape)}")
    G, _, dg = C.shape
    inputs = [ctx.tensor(ctx.inp(0)), ctx.tensor(cb)]
    for index, what in ((2, "ln_scale"), (3, "ln_bias")):
        name = ctx.inp(index)
        if not name:
            inputs.append("")
            continue
        value = np.asarray(ctx.const(name, what))
        if value.size not in (dg, G * dg):
            ctx.fail(f"{what} has {value.size} values; expected {dg} or {G}x{dg}")
        inputs.append(ctx.tensor(_const_name(ctx, name, np.broadcast_to(value.reshape(-1, dg), (G, dg)).copy(), "gd")))
    while inputs and not inputs[-1]:
        inputs.pop()
    if "" in inputs:  # ln_bias without ln_scale: an explicit unit scale
        inputs[2] = ctx.tensor(_const_name(ctx, ctx.inp(3), np.ones((G, dg), np.float32), "unit_scale"))
    outs = [ctx.out(0)] + ([ctx.out(1)] if ctx.out(1) else [])
    ctx.emit("CodebookSnap", inputs, outs, {key: (int(v) if key in ("k", "num_groups") else v)
                                            for key, v in attrs.items()})


def KeyValueLookup(ctx, node):
    attrs = _attrs(ctx, KV_ATTRS)
    proj = ctx.inp(1)
    if attrs["split"] is None:
        attrs["split"] = "projection" if proj else "chunk"
    for index, what in ((1, "projection"), (2, "keys"), (3, "values")):
        if ctx.inp(index):
            ctx.const(ctx.inp(index), what)  # Unsupported unless known at conversion time
    inputs = [ctx.tensor(ctx.inp(0)), ctx.tensor(ctx.inp(2)), ctx.tensor(ctx.inp(3))]
    if proj:
        inputs.append(ctx.tensor(proj))
    n_out = max(i + 1 for i in range(3) if ctx.out(i))
    outs = [ctx.out(i) or None for i in range(n_out)]
    attrs["topk"] = int(attrs["topk"])
    ctx.emit("KeyValueLookup", inputs, outs, attrs)


def LayerNormalization(ctx, node):
    if ctx.out(1) or ctx.out(2):
        raise _unsupported("the Mean / InvStdDev outputs")
    x = ctx.inp(0)
    inputs = [ctx.tensor(x)]
    for index, what in ((1, "Scale"), (2, "B")):
        if ctx.inp(index):
            ctx.const(ctx.inp(index), what)
            inputs.append(ctx.tensor(ctx.inp(index)))
        elif index == 1 and ctx.inp(2):
            inputs.append(ctx.tensor(_const_name(ctx, ctx.inp(2), np.ones_like(ctx.const(ctx.inp(2))), "unit_scale")))
    ctx.emit("LayerNorm", inputs, [ctx.out(0)], {"axis": int(ctx.attr("axis", -1)),
                                                 "epsilon": float(ctx.attr("epsilon", 1e-5))})


CUSTOM_OPS = {"CodebookSnap": CodebookSnap, "KeyValueLookup": KeyValueLookup}
STANDARD_OPS = {"LayerNormalization": LayerNormalization}


# --- the custom ops for onnx.reference.ReferenceEvaluator (tests, fusion checks) ----------------------
def reference_ops():
    """OpRun classes for ``ReferenceEvaluator(model, new_ops=reference_ops())``: edgert's own references."""
    from onnx.reference.op_run import OpRun

    from edgert.ops import REGISTRY

    def snap(self, x, cb, ln_scale=None, ln_bias=None, override=None, disable_mask=None, **attrs):
        attrs = {key: (attrs.get(key) if attrs.get(key) is not None else default) for key, default in SNAP_ATTRS.items()}
        cb = cb[None] if cb.ndim == 2 else cb
        G, _, dg = cb.shape
        gamma = None if ln_scale is None else np.broadcast_to(ln_scale.reshape(-1, dg), (G, dg))
        beta = None if ln_bias is None else np.broadcast_to(ln_bias.reshape(-1, dg), (G, dg))
        return REGISTRY["CodebookSnap"].reference(attrs, x, cb.astype(np.float32), gamma, beta)

    def kv(self, z, proj, keys, values, **attrs):
        attrs = {key: (attrs.get(key) if attrs.get(key) is not None else default) for key, default in KV_ATTRS.items()}
        attrs["split"] = attrs["split"] or ("projection" if proj is not None else "chunk")
        return REGISTRY["KeyValueLookup"].reference(attrs, z, keys, values, proj)

    def make(name, fn, spec):
        def _run(self, *args, **kwargs):
            return fn(self, *args, **{key: kwargs.get(key, getattr(self, key, None)) for key in spec})
        return type(name, (OpRun,), {"op_domain": DOMAIN, "_run": _run})

    return [make("CodebookSnap", snap, SNAP_ATTRS), make("KeyValueLookup", kv, KV_ATTRS)]


def hook_patches() -> list:
    """[(object, attribute, value)] wiring this module into ``converters.onnx`` at run time.

    A stand-in until the loader calls these itself (see the report of this change): registers
    ``STANDARD_OPS``, routes ``ai.edgert`` nodes to ``CUSTOM_OPS``, and fuses plain-op patterns
    before translation. Empty once the loader has the hooks (``loader.CODEBOOK_HOOKS = True``).
    """
    import converters.onnx as package

    from .onnx import loader, ops
    from .onnx.context import Unsupported

    if getattr(loader, "CODEBOOK_HOOKS", False) or getattr(loader.convert_node, "codebook_hooks", False):
        return []
    plain, translate = loader.convert_node, loader.onnx_to_graph

    def convert_node(ctx, node):
        if node.domain != DOMAIN:
            return plain(ctx, node)
        builder = CUSTOM_OPS.get(node.op_type)
        if builder is None:
            raise Unsupported(f"{DOMAIN}.{node.op_type} is not an edgert custom op")
        builder(ctx, node)

    def onnx_to_graph(model, input_shapes=None, *args, **kwargs):
        model, _ = fuse_codebook_patterns(model, input_shapes)
        return translate(model, input_shapes, *args, **kwargs)

    convert_node.codebook_hooks = True
    table = dict(ops.OPS)
    for name, fn in STANDARD_OPS.items():
        table.setdefault(name, fn)
    return [(loader, "convert_node", convert_node), (loader, "onnx_to_graph", onnx_to_graph),
            (package, "onnx_to_graph", onnx_to_graph), (ops, "OPS", table), (loader, "OPS", table)]


def install_hooks() -> None:
    """Apply ``hook_patches`` for the rest of the process (tools; tests use monkeypatch)."""
    for obj, attr, value in hook_patches():
        setattr(obj, attr, value)


def fuse_codebook_patterns(model, input_shapes=None):
    """Replace recognised plain-op codebook / key-value subgraphs by ``ai.edgert`` nodes.

    Returns (new ModelProto, [one line per fused layer]). Each candidate is checked numerically
    against the original subgraph (onnx's reference evaluator on random inputs) before it is kept,
    so an unrecognised variant stays as it was (and the converter reports its ops as unsupported).
    """
    from .onnx_codebook_fuse import fuse
    return fuse(model, input_shapes)
