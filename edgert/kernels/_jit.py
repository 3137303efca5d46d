"""The one place that applies numba decorators, so every kernel is compiled with the same flags.

``cache=True`` keeps cold start short (compiled code is reused across processes; the cache is keyed
to the CPU). ``fastmath`` leaves out ``nnan``/``ninf`` so NaN and infinity keep their meaning;
``reassoc``/``contract`` let LLVM vectorise reductions and use FMA. Results stay bitwise
reproducible for a given machine and thread count.
"""

from __future__ import annotations

import numba
from numba import prange  # noqa: F401  (re-exported for kernel modules)

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})


def kernel(fn=None, *, parallel: bool = False):
    """Decorate a top-level kernel: ``@kernel`` or ``@kernel(parallel=True)``."""
    def wrap(f):
        return numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=set(FASTMATH),
                          parallel=parallel)(f)
    return wrap(fn) if fn is not None else wrap


def inline(fn):
    """A small helper called from kernels (inlined by LLVM; cached with its callers)."""
    return numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=set(FASTMATH), inline="always")(fn)
