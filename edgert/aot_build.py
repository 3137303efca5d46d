"""Build the host's ahead-of-time kernel library (``edgert warm``; the run-time half is ``aot.py``).

For every step of a session whose kernel is a serial numba kernel, the exact argument types are
recorded; together with what the library already holds they are compiled by numba's ``pycc`` into one
CPython extension module (native code for this CPU, numba's small C runtime linked in, no LLVM
needed to load it). Each entry point is a one-line wrapper calling the kernel's own dispatcher, so
the kernel keeps its compile flags (fastmath, numpy error model, inlined helpers).

Not compiled ahead of time: ``parallel=True`` kernels (their loops need numba's thread pool; a
session with more than one thread still JIT-compiles those, from numba's cache) and numpy steps.
Building needs C and C++ compilers and Python's headers (``gcc``, ``g++``, ``python3-dev``); without them ``warm``
still fills numba's cache and says why the library was not built.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from . import aot
from .fileio import atomic_write
from .kernels import _jit
from .ops.registry import Sequence


class AOTUnavailable(Exception):
    """The library cannot be built here (no compiler, no headers, no CPU fingerprint)."""


def toolchain_problem() -> str | None:
    """Why an extension module cannot be built on this machine, or None."""
    if aot.library_dir() is None:
        return "the CPU model and features cannot be read from /proc/cpuinfo"
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is missing (pip install 'edgert[aot]'); numba's pycc builds with it"
    include = sysconfig.get_paths().get("include")
    if not include or not (Path(include) / "Python.h").is_file():
        return f"Python's headers are missing ({include}/Python.h; install python3-dev)"
    try:
        with warnings.catch_warnings():  # pycc is "pending deprecation" since numba 0.57; still shipped
            warnings.simplefilter("ignore")
            from numba.pycc.platform import external_compiler_works  # what pycc checks: C and C++ build
    except ImportError:
        return "this numba has no pycc (numba.pycc); the JIT cache still works"
    external_compiler_works.cache_clear()  # CC/CXX may have changed since the last check
    if not external_compiler_works():
        cc = os.environ.get("CC") or sysconfig.get_config_var("CC")
        cxx = os.environ.get("CXX") or sysconfig.get_config_var("CXX")
        return f"no working C and C++ compiler (CC={cc}, CXX={cxx}; install gcc and g++)"
    return None


def flat_calls(calls):
    """(fn, args) pairs with every ``Sequence`` step opened into its calls."""
    for fn, args in calls:
        if isinstance(fn, Sequence):
            yield from flat_calls(zip(fn.calls, args))
        else:
            yield fn, args


def session_entries(session):
    """([(kernel name, args key)], [(kernel, why not)]) for the steps of ``session``."""
    entries, skipped = [], []
    for fn, args in flat_calls(session.kernel_calls()):
        name = aot.kernel_name(fn)
        if name is None:
            continue  # numpy / Python steps need no compilation
        dispatcher = fn.dispatcher() if isinstance(fn, _jit.LazyKernel) else fn
        if dispatcher.targetoptions.get("parallel"):
            skipped.append((name, "parallel kernel (numba thread pool; JIT from numba's cache)"))
            continue
        try:
            entries.append((name, aot.args_key(args)))
        except aot.Unsupported as exc:
            skipped.append((name, f"argument types not modelled ({exc})"))
    return entries, skipped


def _numba_type(key):
    from numba import types
    from numba.np.numpy_support import from_dtype
    kind = key[0]
    if kind == "a":
        _, dtype, ndim, layout, readonly = key
        return types.Array(from_dtype(np.dtype(dtype)), ndim, layout, readonly=readonly)
    if kind == "s":
        return types.boolean if key[1] == "bool" else from_dtype(np.dtype(key[1]))
    if kind == "none":
        return types.none
    if kind == "t":
        return types.BaseTuple.from_types([_numba_type(k) for k in key[1]])
    raise ValueError(f"unknown argument key {key!r}")


def _dispatcher(kernel: str):
    module, _, name = kernel.partition(":")
    fn = getattr(importlib.import_module(module), name)
    return fn.dispatcher() if isinstance(fn, _jit.LazyKernel) else fn


def _export(cc, symbol: str, kernel: str, key: str):
    dispatcher = _dispatcher(kernel)
    argtypes = tuple(_numba_type(k) for k in json.loads(key))
    dispatcher.compile(argtypes)  # from numba's cache when it is there
    signature = dispatcher.overloads[argtypes].signature
    params = ", ".join(f"a{i}" for i in range(len(argtypes)))
    namespace = {"kernel": dispatcher}
    exec(f"def entry({params}):\n    return kernel({params})\n", namespace)  # noqa: S102 (fixed text)
    cc.export(symbol, signature)(namespace["entry"])


def build(entries, progress=None) -> dict:
    """Compile ``entries`` plus what the host library already holds into a new library; returns a report."""
    problem = toolchain_problem()
    if problem:
        raise AOTUnavailable(problem)
    _jit.enable_jit()
    from numba.core import codegen
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from numba.pycc import CC

    from .kernels import simd

    directory = aot.library_dir()
    old = aot.read_manifest(directory) or {"entries": []}
    have = {(e["kernel"], e["key"]) for e in old["entries"]}
    wanted = sorted(have | set(entries))
    if set(wanted) == have and old.get("file"):
        return {"dir": str(directory), "entries": len(wanted), "new": 0, "seconds": 0.0, "built": False}
    t0 = time.perf_counter()
    digest = hashlib.sha256(json.dumps(wanted).encode()).hexdigest()[:12]
    module_name = f"edgert_aot_{digest}"
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=directory))  # same file system: os.replace below
    cc = CC(module_name, source_module=sys.modules[__name__])
    cc.output_dir = str(tmp)
    cc.target_cpu = "host"
    manifest_entries = []
    for i, (kernel, key) in enumerate(wanted):
        if progress:
            progress(i, len(wanted), kernel)
        symbol = f"k{i}"
        _export(cc, symbol, kernel, key)
        manifest_entries.append({"kernel": kernel, "key": key, "symbol": symbol})
    # pycc targets the CPU model only; give it this host's exact feature flags, as the JIT uses.
    features = codegen.AOTCPUCodegen._customize_tm_features
    codegen.AOTCPUCodegen._customize_tm_features = lambda self: codegen.get_host_cpu_features()
    try:
        cc.compile()
    finally:
        codegen.AOTCPUCodegen._customize_tm_features = features
        if not any(tmp.glob(f"{module_name}*")):
            shutil.rmtree(tmp, ignore_errors=True)
    built = next(tmp.glob(f"{module_name}*"))
    os.replace(built, directory / built.name)  # a new name: processes using the old file keep it
    shutil.rmtree(tmp, ignore_errors=True)
    data = (directory / built.name).read_bytes()
    manifest = {"format": aot.FORMAT, "module": module_name, "file": built.name,
                "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "vector_width": int(simd.VW), "has_fma": bool(simd.HAS_FMA),
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "entries": manifest_entries}
    with atomic_write(directory / aot.MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
    if old.get("file") and old["file"] != built.name:
        (directory / old["file"]).unlink(missing_ok=True)
    aot.forget()
    return {"dir": str(directory), "entries": len(wanted), "new": len(set(wanted) - have),
            "seconds": time.perf_counter() - t0, "built": True}
