"""Decode TFLite ``SparsityParameters`` (TACO-style CSR per level, optional blocks) to a dense array.

A sparse tensor of rank n with k block dims is stored as n + k traversal levels. Level ``l`` walks
dimension ``traversal_order[l]``: an original dim (< n, counted in blocks if that dim is blocked) or
block dim ``j = traversal_order[l] - n`` refining original dim ``block_map[j]``. A DENSE level visits
every coordinate ``0..dense_size-1``; a SPARSE_CSR level visits, for its parent position ``p``, the
coordinates ``indices[segments[p]:segments[p+1]]``. The parent position of a level is
``parent * dense_size + c`` under a DENSE level and the index-array position under a CSR level. The
leaves, in this order, are the buffer's values (explicit zeros inside blocks included).

The walk is done level by level with numpy (not element by element), after checking every array
against the sizes the shape implies, so a malformed file gives a ``ValueError`` with a reason, never
an out-of-bounds read or an allocation beyond the dense size.
"""

from __future__ import annotations

import math

import numpy as np


def densify(values: np.ndarray, shape, traversal_order, block_map, dim_metadata) -> np.ndarray:
    """Return the dense tensor of ``shape`` described by the sparse encoding.

    Parameters
    ----------
    values : 1-D array
        The stored values in traversal order (their dtype is kept).
    shape : sequence of int
        The dense shape (n dims).
    traversal_order : sequence of int
        n + k entries: a permutation of the n dims, then a permutation of the block dims n..n+k-1.
    block_map : sequence of int
        k entries: block dim j refines original dim ``block_map[j]``.
    dim_metadata : sequence
        n + k level descriptions with ``format`` ("DENSE"/"SPARSE_CSR"), ``dense_size``,
        ``segments`` and ``indices`` (integer arrays).

    Raises
    ------
    ValueError
        When the encoding is inconsistent with the shape or the number of values.
    """
    shape = [int(d) for d in shape]
    values = np.asarray(values).reshape(-1)
    n, k = len(shape), len(block_map)
    order = [int(v) for v in traversal_order]
    block_map = [int(v) for v in block_map]
    if len(order) != n + k or len(dim_metadata) != n + k:
        raise ValueError(f"traversal order ({len(order)}) and dim metadata ({len(dim_metadata)}) must have "
                         f"{n} + {k} entries for a rank-{n} tensor with {k} block dims")
    if sorted(order[:n]) != list(range(n)) or sorted(order[n:]) != list(range(n, n + k)):
        raise ValueError(f"traversal order {order} is not a permutation of the dims then the block dims")
    if any(not 0 <= d < n for d in block_map) or len(set(block_map)) != k:
        raise ValueError(f"block map {block_map} must name distinct dims below {n}")
    # Block sizes come from the DENSE levels that walk the block dims.
    block_size = [0] * k
    for level, dim in enumerate(order):
        if dim >= n:
            meta = dim_metadata[level]
            if meta.format != "DENSE" or int(meta.dense_size) < 1:
                raise ValueError(f"level {level} walks block dim {dim - n} and must be DENSE with a size >= 1")
            block_size[dim - n] = int(meta.dense_size)
    blocks_of = {block_map[j]: block_size[j] for j in range(k)}
    level_size = []  # extent each level's coordinates must stay below
    for dim in order:
        if dim >= n:
            level_size.append(block_size[dim - n])
        elif dim in blocks_of:
            if shape[dim] % blocks_of[dim]:
                raise ValueError(f"dim {dim} of size {shape[dim]} is not a multiple of its block size {blocks_of[dim]}")
            level_size.append(shape[dim] // blocks_of[dim])
        else:
            level_size.append(shape[dim])
    total = math.prod(shape)

    # pos: parent position of each path so far; coords: one row per level of each path's coordinates.
    pos = np.zeros(1, dtype=np.int64)
    coords = []
    for level, meta in enumerate(dim_metadata):
        size = level_size[level]
        if meta.format == "DENSE":
            if int(meta.dense_size) != size:
                raise ValueError(f"level {level} is DENSE of size {meta.dense_size}, the shape implies {size}")
            if pos.size * size > total:
                raise ValueError(f"level {level} would visit more positions than the {total} dense elements")
            c = np.tile(np.arange(size, dtype=np.int64), pos.size)
            coords = [np.repeat(row, size) for row in coords]
            pos = np.repeat(pos, size) * size + c
        elif meta.format == "SPARSE_CSR":
            seg = np.asarray(meta.segments, dtype=np.int64).reshape(-1)
            idx = np.asarray(meta.indices, dtype=np.int64).reshape(-1)
            parents = int(pos.max()) + 1 if pos.size else 0
            if seg.size < parents + 1:
                raise ValueError(f"level {level} has {seg.size} segments; its parents need {parents + 1}")
            if seg.size and (seg[0] < 0 or np.any(np.diff(seg) < 0) or seg[-1] > idx.size):
                raise ValueError(f"level {level} segments must be non-decreasing within 0..{idx.size}")
            if idx.size and (idx.min() < 0 or idx.max() >= size):
                raise ValueError(f"level {level} indices must lie in 0..{size - 1}")
            starts, counts = seg[pos], seg[pos + 1] - seg[pos]
            n_children = int(counts.sum())
            if n_children > total:
                raise ValueError(f"level {level} would visit more positions than the {total} dense elements")
            # child positions: for each parent p, the range starts[p] .. starts[p] + counts[p] - 1
            first = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
            child = first + np.arange(n_children, dtype=np.int64)
            c = idx[child]
            # coordinates under one parent must be strictly increasing (CSR has no duplicates)
            same_parent = np.repeat(np.arange(pos.size), counts)
            if n_children > 1 and np.any((np.diff(same_parent) == 0) & (np.diff(c) <= 0)):
                raise ValueError(f"level {level} indices are not strictly increasing within a segment")
            coords = [np.repeat(row, counts) for row in coords]
            pos = child
        else:
            raise ValueError(f"level {level} has unknown format {meta.format!r}")
        coords.append(c)
    if pos.size != values.size:
        raise ValueError(f"the encoding describes {pos.size} stored values but the buffer holds {values.size}")

    orig = [None] * n
    for level, dim in enumerate(order[:n]):
        orig[dim] = coords[level]
    for level in range(n, n + k):
        j = order[level] - n
        d = block_map[j]
        orig[d] = orig[d] * block_size[j] + coords[level]
    dense = np.zeros(total, dtype=values.dtype)
    if values.size:
        flat = np.ravel_multi_index(tuple(orig), shape) if n else np.zeros(values.size, np.int64)
        dense[flat] = values
    return dense.reshape(shape)


def describe(dense: np.ndarray, block_map, dim_metadata, traversal_order) -> dict:
    """Sparsity facts worth keeping in graph metadata: density of nonzeros and the block shape."""
    n = dense.ndim
    block = [1] * n
    for level, dim in enumerate(traversal_order):
        if dim >= n:
            block[block_map[dim - n]] = int(dim_metadata[level].dense_size)
    nonzero = int(np.count_nonzero(dense))
    return {"density": round(nonzero / dense.size, 6) if dense.size else 0.0, "nonzeros": nonzero,
            "block": block, "formats": [m.format for m in dim_metadata]}
