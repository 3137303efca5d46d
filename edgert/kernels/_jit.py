"""The one place that applies numba decorators, so every kernel is compiled with the same flags.

``cache=True`` keeps cold start short (compiled code is reused across processes; the cache is keyed
to the CPU). ``fastmath`` leaves out ``nnan``/``ninf`` so NaN and infinity keep their meaning;
``reassoc``/``contract`` let LLVM vectorise reductions and use FMA. Results stay bitwise
reproducible for a given machine and thread count.

Deferred JIT. Importing numba costs ~0.2-0.4 s (LLVM's shared library, numba's modules), more than
onnxruntime's whole start. When ``edgert warm`` has built an ahead-of-time library for this CPU and
these kernel sources (``edgert/aot.py``), kernels are not handed to numba at import: ``kernel`` and
``inline`` return ``LazyKernel`` records, ``simd`` is a stand-in module, and numba is never imported
unless a session needs a kernel the library lacks (``enable_jit``: then every record becomes a real
dispatcher and the kernel modules' globals are patched, so kernels calling kernels compile as usual).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import types as _pytypes
from pathlib import Path

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
    from ..aot import cache_root as edgert_cache_root
    return edgert_cache_root() / "numba"


def cache_dir() -> str:
    """Where numba caches compiled kernels (NUMBA_CACHE_DIR when set)."""
    return os.environ.get("NUMBA_CACHE_DIR") or str(cache_root() / _source_digest())


def _configure_cache(numba) -> None:
    # An explicit NUMBA_CACHE_DIR from the user wins; otherwise one directory per kernel-source version.
    if not os.environ.get("NUMBA_CACHE_DIR"):
        numba.config.CACHE_DIR = cache_dir()


def _choose_threading_layer(numba) -> bool:
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


FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
_KERNEL_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}

# When False, sessions serialise their runs on one process-wide lock (see runtime/session.py). Kernels
# from the ahead-of-time library hold the GIL and never use numba's thread pool, so they are safe.
CONCURRENT_LAUNCH_SAFE = True
_numba = None  # the numba module once the JIT is enabled
_lazy: list = []  # LazyKernel records made while the JIT was deferred


class LazyKernel:
    """A kernel whose numba dispatcher is made only when something needs it (see the module doc).

    Calling it, or asking it for a dispatcher attribute (``signatures``, ``inspect_asm``, ...),
    enables the JIT first, so code written for dispatchers keeps working.
    """

    __slots__ = ("_dispatcher", "options", "py_func")

    def __init__(self, py_func, options):
        self.py_func = py_func
        self.options = options
        self._dispatcher = None

    @property
    def __name__(self):
        return self.py_func.__name__

    @property
    def __module__(self):
        return self.py_func.__module__

    def dispatcher(self):
        if self._dispatcher is None:
            enable_jit()
        return self._dispatcher

    def __call__(self, *args):
        return self.dispatcher()(*args)

    def __getattr__(self, name):
        return getattr(self.dispatcher(), name)

    def __repr__(self):
        return f"<kernel {self.py_func.__module__}.{self.py_func.__name__} (JIT deferred)>"


class _SimdPlaceholder:
    """Stands for a name of ``simd`` (an intrinsic, the vector type) while the JIT is deferred."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"simd.{self.name} is only usable inside compiled kernels")


def _simd_stand_in(vector_width: int, has_fma: bool):
    """A module object for ``edgert.kernels.simd`` that needs no numba: the target's vector width
    (recorded by the AOT build on this CPU) and placeholders for the intrinsics."""
    module = _pytypes.ModuleType(__name__.rsplit(".", 1)[0] + ".simd", "stand-in while the JIT is deferred")
    module.VW, module.HAS_FMA = vector_width, has_fma

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _SimdPlaceholder(name)

    module.__getattr__ = __getattr__
    module._STAND_IN = True
    return module


def jit_enabled() -> bool:
    return _numba is not None


def enable_jit() -> None:
    """Import numba, and turn every deferred kernel into a real dispatcher. Idempotent."""
    global _numba, CONCURRENT_LAUNCH_SAFE, prange
    if _numba is not None:
        return
    import importlib

    import numba
    _configure_cache(numba)
    CONCURRENT_LAUNCH_SAFE = _choose_threading_layer(numba)
    _numba = numba
    prange = numba.prange
    package = __name__.rsplit(".", 1)[0]
    stand_in = sys.modules.get(package + ".simd")
    if stand_in is not None and getattr(stand_in, "_STAND_IN", False):
        del sys.modules[package + ".simd"]
    simd = importlib.import_module(package + ".simd")  # the real one: intrinsics need numba
    if stand_in is not None and (stand_in.VW, stand_in.HAS_FMA) != (simd.VW, simd.HAS_FMA):
        raise RuntimeError(f"the AOT library was built for vectors of {stand_in.VW} floats, numba targets "
                           f"{simd.VW}: remove the library (edgert warm rebuilds it)")
    sys.modules[package].simd = simd
    for record in _lazy:
        record._dispatcher = numba.njit(**record.options)(record.py_func)
    # Kernel bodies look up their callees, intrinsics and prange in their module's globals at compile
    # time: point those names at the real objects before anything compiles.
    for name, module in list(sys.modules.items()):
        if not name.startswith(package + ".") or module is None:
            continue
        namespace = module.__dict__
        for key, value in list(namespace.items()):
            if isinstance(value, LazyKernel):
                namespace[key] = value._dispatcher
            elif isinstance(value, _SimdPlaceholder):
                namespace[key] = getattr(simd, value.name)
            elif key == "prange" and value is range:
                namespace[key] = numba.prange
    _lazy.clear()


def _decorate(fn, options):
    if _numba is not None:
        return _numba.njit(**options)(fn)
    record = LazyKernel(fn, options)
    _lazy.append(record)
    return record


def kernel(fn=None, *, parallel: bool = False):
    """Decorate a top-level kernel: ``@kernel`` or ``@kernel(parallel=True)``."""
    def wrap(f):
        return _decorate(f, dict(_KERNEL_OPTIONS, fastmath=set(FASTMATH), parallel=parallel))
    return wrap(fn) if fn is not None else wrap


def inline(fn):
    """A small helper called from kernels (inlined by LLVM; cached with its callers)."""
    return _decorate(fn, dict(_KERNEL_OPTIONS, fastmath=set(FASTMATH), inline="always"))


def _start() -> None:
    """At import: defer the JIT when an AOT library serves this host, else enable it now."""
    global prange
    from ..aot import host_library_target
    target = host_library_target()
    if target is None:
        enable_jit()
        return
    prange = range  # replaced by numba.prange in every kernel module when the JIT is enabled
    package = __name__.rsplit(".", 1)[0]
    sys.modules.setdefault(package + ".simd", _simd_stand_in(*target))


prange = range
_start()
