"""On-device value updates for discrete key-value bottlenecks: rewrite a model's value table, atomically.

In a key-value bottleneck the encoder, projection and keys are frozen; a model adapts by
changing value rows only, and each sample touches just the C rows its heads selected. The value
table is a constant of the .ert file, so an update reads the model (weights checked), replaces
rows of that one constant, and writes the whole file again through ``write_ert``: a temporary
file next to the target, fsync, rename, directory fsync. A crash or power cut at any moment leaves
the old model or the new one, never a mix.

Rows are addressed as flat indices ``c * M + j`` or as ``(head, key)`` pairs::

    update_values("clf.ert", "kv", {(3, 17): v, 1042: w})             # dict of rows
    update_values("clf.ert", 0, (idx, new_rows), out="clf-adapted.ert")  # arrays: [n] or [n, 2], [n, dv]

``value_rows`` reads rows back; ``gradient_rows`` computes the voting decoder's cross-entropy
gradient for a batch (notes §4.4: only the selected rows get one).
"""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np

from .errors import InputError
from .ir.format import read_ert, write_ert

KV = "KeyValueLookup"


def _kv_node(graph, layer, path):
    nodes = [n for n in graph.nodes if n.op == KV]
    if isinstance(layer, numbers.Integral) and not isinstance(layer, bool):
        if not -len(nodes) <= layer < len(nodes):
            raise InputError(f"layer {layer} is out of range: the model has {len(nodes)} {KV} layer(s)", file=path)
        return nodes[layer]
    for node in nodes:
        if node.name == layer:
            return node
    raise InputError(f"no {KV} layer named {layer!r}; the model has {[n.name for n in nodes]}", file=path)


def _rows(rows, C, M, dv, path, node):
    """(flat indices [n] int64, values [n, dv] float64) from a dict or an (indices, values) pair."""
    def fail(message):
        return InputError(message, file=path, node=node, op=KV)

    def pair(key):
        if isinstance(key, numbers.Integral) and not isinstance(key, bool):
            if not 0 <= key < C * M:
                raise fail(f"flat row index {key} is out of range [0, {C * M})")
            return divmod(int(key), M)
        try:
            head, j = key
            return int(head), int(j)
        except (TypeError, ValueError):
            raise fail(f"row key {key!r} must be a flat index or a (head, key) pair") from None

    if isinstance(rows, dict):
        idx = np.array([pair(key) for key in rows], dtype=np.int64).reshape(-1, 2)
        values = np.array([np.asarray(v, dtype=np.float64).reshape(-1) for v in rows.values()])
        values = values.reshape(len(idx), -1) if len(idx) else np.zeros((0, dv))
    else:
        try:
            keys, values = rows
        except (TypeError, ValueError):
            raise fail("rows must be a dict {row: vector} or a pair (indices, values)") from None
        keys = np.asarray(keys)
        if keys.ndim not in (1, 2) or (keys.ndim == 2 and keys.shape[1] != 2) or not np.issubdtype(keys.dtype, np.integer) and keys.size:
            raise fail(f"indices must be integers [n] (flat) or [n, 2] (head, key), got {keys.dtype} {list(keys.shape)}")
        idx = np.array([pair(int(i)) if keys.ndim == 1 else (int(i[0]), int(i[1])) for i in keys], np.int64).reshape(-1, 2)
        values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(idx), dv):
        raise fail(f"values must be [{len(idx)}, {dv}] (one row of dv={dv} per index), got {list(values.shape)}")
    if len(idx) and (idx[:, 0].min() < 0 or idx[:, 0].max() >= C or idx[:, 1].min() < 0 or idx[:, 1].max() >= M):
        raise fail(f"(head, key) out of range [0, {C}) x [0, {M})")
    if not np.isfinite(values).all():
        raise fail("values must be finite")
    flat = idx[:, 0] * M + idx[:, 1]
    if len(np.unique(flat)) != len(flat):
        raise fail("a row is given twice")
    return flat, values


def update_values(model_path, layer, rows, out=None, verify: bool = True) -> Path:
    """Write a copy of ``model_path`` (or the file itself) with some value rows of ``layer`` replaced.

    Parameters
    ----------
    model_path : str or Path
        An .ert model holding a KeyValueLookup node.
    layer : str or int
        The node name, or its index among the KeyValueLookup nodes.
    rows : dict or (indices, values)
        ``{flat_row or (head, key): vector[dv]}``, or indices [n] (flat) / [n, 2] (head, key) with
        values [n, dv].
    out : str or Path, optional
        Where to write; default: replace ``model_path`` in place (atomically).
    verify : bool
        Check every weight blob's checksum before rewriting, so a corrupted file is never re-blessed
        with fresh checksums.

    Returns the path written. fp16 value tables stay fp16 (rows are rounded to half precision;
    rows outside the half range are an error).
    """
    model_path = Path(model_path)
    graph = read_ert(model_path, verify=verify)
    node = _kv_node(graph, layer, model_path)
    name = node.inputs[2]
    old = graph.consts[name]
    C, M, dv = old.shape
    flat, values = _rows(rows, C, M, dv, model_path, node.name)
    if old.dtype == np.float16 and np.abs(values).max(initial=0) > np.finfo(np.float16).max:
        raise InputError("a value does not fit the model's fp16 value table", file=model_path, node=node.name, op=KV)
    table = np.array(old)  # the one copy: only this constant changes; the others stay memory-mapped
    table.reshape(C * M, dv)[flat] = values.astype(table.dtype)
    graph.consts[name] = table
    target = Path(out) if out is not None else model_path
    write_ert(graph, target, producer="edgert.kv_update")
    return target


def value_rows(model_path, layer, rows) -> np.ndarray:
    """Current values of rows (flat indices or (head, key) pairs) as float32 [n, dv]."""
    graph = read_ert(model_path, verify=False)
    node = _kv_node(graph, layer, model_path)
    table = graph.consts[node.inputs[2]]
    C, M, dv = table.shape
    idx = np.asarray(rows, dtype=np.int64)
    flat = idx if idx.ndim == 1 else idx[:, 0] * M + idx[:, 1]
    return table.reshape(C * M, dv)[flat].astype(np.float32)


def gradient_rows(ids, logits, labels):
    """Cross-entropy gradient of the voting decoder with respect to the value rows a batch selected.

    With ``logits[n] = mean_c sum_t V[c, ids[n, c, t]]``, dCE/dV[c, ids[n, c, t]] =
    (softmax(logits[n]) - onehot(labels[n])) / C, and no other row has a gradient (the paper's
    "localized updates"). ``ids``: [n, C, topk] (e.g. from ``edgert.interventions.codes``);
    ``logits``: [n, dv]; ``labels``: [n]. Returns ((head, key) pairs [r, 2], gradients [r, dv])
    summed over the batch, each selected row once: ready for ``update_values``.
    """
    ids = np.asarray(ids)
    n, C = ids.shape[0], ids.shape[1]
    ids = ids.reshape(n, C, -1)
    z = np.asarray(logits, np.float64).reshape(n, -1)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p[np.arange(n), np.asarray(labels)] -= 1.0
    span = int(ids.max(initial=0)) + 1
    keys = (np.arange(C)[None, :, None] * span + ids).reshape(-1)  # one integer per (head, key) row
    uniq, inverse = np.unique(keys, return_inverse=True)
    per_slot = np.repeat(p / C, C * ids.shape[2], axis=0)  # row-major over (n, c, t), like keys
    total = np.stack([np.bincount(inverse, weights=per_slot[:, v], minlength=len(uniq))
                      for v in range(z.shape[1])], axis=-1)
    return np.stack([uniq // span, uniq % span], axis=-1), total
