"""How the ``_mt`` kernels share their work items among threads.

A kernel with n items runs T workers under prange. Worker t first takes the items of its own band
[t*n/T, (t+1)*n/T) in order, from its own cursor; when its band is done it takes what is left of the
others' bands from their cursors (atomic fetch-adds, ``simd.fetch_add``). So:

* on idle cores every worker gets exactly its band, the same band in every kernel. Items are
  numbered with the spatial position most significant (output rows or pixel chunks first, channels
  within), so worker t writes and reads the t-th horizontal band of every tensor of a chain of
  layers, and those lines stay in its core's cache. With one shared counter the items went to
  whichever worker came first, and about half of every layer's input had to come across from the
  other core: a depthwise conv on 14x14x672 took 163 us after the layers before it against
  114 us hot;
* a worker on a busy or slower core takes fewer items instead of holding up the region (prange's
  own split is static), as with one shared counter.

``work`` (``work_counter``): int64 [T, then T cursors each on its own 64-byte line].
"""

from __future__ import annotations

import numpy as np

from ._jit import inline
from .simd import fetch_add

# A memory-bound pass (a copy, a pool, a resize) over at least this many output floats runs on the
# session's threads: below it (a 6x6x256 map: ~3 us) starting the parallel region costs more than
# it saves.
PARALLEL_MIN_FLOATS = 16384
LINE = 8  # int64 per cache line: each worker's cursor on its own line (no false sharing between them)
# Items per worker for kernels that cut their work into equal parts (sparse 1x1, NCHW depthwise,
# flat elementwise): enough that a worker on a busy core can leave some to the other.
ITEMS_PER_WORKER = 8


def threads_for(threads: int, floats: int, items: int = 2) -> tuple:
    """Run a memory-bound pass writing ``floats`` outputs over the session's ``threads``? Returns
    (kernel name suffix, extra arguments): ('_mt', (work counter,)), or ('', ()) for one thread, too
    little work, or fewer than two ``items`` to share."""
    if threads > 1 and floats >= PARALLEL_MIN_FLOATS and items > 1:
        return "_mt", (work_counter(threads),)
    return "", ()


def work_counter(threads: int) -> np.ndarray:
    """The ``work`` argument of the ``_mt`` kernels for ``threads`` workers."""
    w = np.zeros(LINE * (threads + 1), np.int64)
    w[0] = threads
    return w


@inline
def start_work(work):
    """Reset the cursors (before the parallel loop: every call of a kernel starts from item 0)."""
    for u in range(work[0]):
        work[LINE * (u + 1)] = 0


@inline
def take(work, t, n):
    """The next of n items for worker t (its own band first, then the others'), or -1: none left."""
    T = work[0]
    for k in range(T):
        u = t + k
        if u >= T:
            u -= T
        i = u * n // T + fetch_add(work, LINE * (u + 1), 1)
        if i < (u + 1) * n // T:
            return i
    return -1


@inline
def spans_per_plane(planes, rows, items):
    """Row (or pixel) spans per plane for a kernel whose items are (span, plane): about ``items``
    items in all, and at least 4 spans, so that workers' bands are bands of rows."""
    return max(min(rows, np.int64(4)), min(rows, (items + planes - 1) // planes))


@inline
def band_item(it, planes, rows, chunks):
    """(plane, first row, end row) of item it, items numbered span first: a worker's band of items
    is then a band of rows across all planes."""
    c = it // planes
    b = it - c * planes
    return b, c * rows // chunks, (c + 1) * rows // chunks
