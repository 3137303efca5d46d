"""The one place that applies numba decorators, so every kernel is compiled with the same flags.

``cache=True`` keeps cold start short (compiled code is reused across processes; the cache is keyed
to the CPU). ``fastmath`` leaves out ``nnan``/``ninf`` so NaN and infinity keep their meaning;
``reassoc``/``contract`` let LLVM vectorise reductions and use FMA. Results stay bitwise
reproducible for a given machine and thread count.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numba
from numba import prange  # noqa: F401  (re-exported for kernel modules)

_IMPORT = re.compile(r"^from \.(\w*) import (.+)$", re.MULTILINE)


def _shared_modules(kernel_dir: Path) -> set[str]:
    """Kernel modules that other kernel modules import (``from .simd import ...``, ``from . import im2col``)."""
    shared = {"_jit.py"}
    for path in kernel_dir.glob("*.py"):
        for module, names in _IMPORT.findall(path.read_text(encoding="utf-8")):
            if module:
                shared.add(module + ".py")
            else:
                shared.update(name.strip() + ".py" for name in names.split(","))
    return shared


def _source_digest() -> str:
    """Hash of the kernel sources that other kernel files import.

    Numba's cache checks only the decorated function's own file (its mtime and size), so a change to
    a shared helper (act.py, simd.py, ...) would otherwise leave stale machine code in use. Leaf files
    (conv.py, pool.py, a new kernel file) are not hashed here: numba's own check recompiles just that
    file when it changes, instead of every kernel in the package.
    """
    kernel_dir = Path(__file__).parent
    h = hashlib.sha256()
    for name in sorted(_shared_modules(kernel_dir)):
        path = kernel_dir / name
        if path.exists():
            h.update(name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("EDGERT_CACHE_DIR") or Path.home() / ".cache" / "edgert") / "numba"


def cache_dir() -> str:
    """Where compiled kernels are cached (NUMBA_CACHE_DIR when set)."""
    return os.environ.get("NUMBA_CACHE_DIR") or numba.config.CACHE_DIR


def _configure_cache() -> None:
    # An explicit NUMBA_CACHE_DIR from the user wins; otherwise one directory per kernel-source version.
    if not os.environ.get("NUMBA_CACHE_DIR"):
        numba.config.CACHE_DIR = str(cache_root() / _source_digest())


_configure_cache()


def _choose_threading_layer() -> bool:
    """Prefer numba's OpenMP layer: unlike the default 'workqueue' layer it is safe to launch parallel
    kernels from several Python threads at once. Returns True when concurrent launches are safe."""
    requested = os.environ.get("NUMBA_THREADING_LAYER", "").lower()
    if requested:
        return requested in ("omp", "tbb", "safe", "threadsafe")
    # GNU OpenMP workers spin-wait for long by default: when another process holds a core, a
    # 2-thread kernel then crawls (measured 10-100x slower than 1 thread). Purely passive waiting
    # avoids that but costs ~50 us of wake-up per parallel region, which ate the whole 2-thread gain
    # (MobileNetV2 0.90x of 1 thread). A short bounded spin (GOMP_SPINCOUNT iterations, a few us)
    # bridges the gap between one kernel and the next, then the workers sleep: MobileNetV2 1.48x,
    # pose_detection 1.55x at 2 threads (BENCHMARKS.md). libgomp reads both when it loads, so they
    # are set before importing omppool; values from the user's environment win.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    try:
        from numba.np.ufunc import omppool  # noqa: F401  (fails when no OpenMP runtime is installed)
    except ImportError:
        return False
    numba.config.THREADING_LAYER = "omp"
    return True


# When False, sessions serialise their runs on one process-wide lock (see runtime/session.py).
CONCURRENT_LAUNCH_SAFE = _choose_threading_layer()

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
