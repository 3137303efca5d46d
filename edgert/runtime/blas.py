"""Keep numpy's BLAS from oversubscribing the cores a session was given.

Almost every edgert kernel is a numba kernel on the session's threads. A few fallbacks call numpy
routines that go through BLAS (``np_matmul`` for MatMul with computed operands, ``np_convtranspose``
for computed weights); OpenBLAS/MKL would then start one thread per CPU on top of the session's,
e.g. 4 BLAS threads next to a 1-thread session pinned to one core of a Pi. When the session has
such a node, its runs hold BLAS to the session's thread count through ``threadpoolctl`` (when it is
installed; without it, set OPENBLAS_NUM_THREADS before starting Python, as the inspect note says).
"""

from __future__ import annotations

import contextlib

BLAS_KERNELS = frozenset({"np_matmul", "np_convtranspose"})


def blas_guard(kernel_names, threads: int):
    """(context-manager factory, note for inspect). The factory is ``contextlib.nullcontext`` when no
    node uses BLAS or threadpoolctl is missing."""
    users = sorted(set(kernel_names) & BLAS_KERNELS)
    if not users:
        return contextlib.nullcontext, None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext, (f"{', '.join(users)} use numpy's BLAS, whose thread count edgert cannot "
                                        "limit without threadpoolctl: set OPENBLAS_NUM_THREADS")
    return (lambda: threadpool_limits(limits=threads, user_api="blas")), \
        f"{', '.join(users)} use numpy's BLAS: held to {threads} thread(s) during runs"
