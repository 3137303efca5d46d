"""Ahead-of-time compiled kernels: start a model without importing numba or LLVM.

``edgert warm MODEL`` (see ``aot_build.py``) compiles the serial kernels a model calls, for the
argument types it calls them with, into one CPython extension module per host, next to a JSON
manifest. This module is the run-time half and imports nothing heavy: it finds the library that
matches this host and these kernel sources, and hands ``Session`` the compiled function for a
step when the library has the exact signature, or nothing (the step then uses the numba JIT).

Why it is safe: the extension's entry points trust their argument types (like any C function), so
a function is only handed out for arguments whose numba type is exactly the one it was compiled
for. ``arg_key`` computes that type's identity from the values the way numba's ``typeof`` does
(dtype, ndim, layout and read-only for aligned arrays; the numpy type for scalars), and the library is
keyed by a fingerprint of the CPU (its model and feature flags), the Python version, numpy's major
version and a hash of every kernel source file: any change there means the library is ignored.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

FORMAT = 1
MANIFEST = "manifest.json"
_KERNEL_DIR = Path(__file__).parent / "kernels"


def cache_root() -> Path:
    """``$EDGERT_CACHE_DIR`` or ``~/.cache/edgert`` (also the root of numba's kernel cache)."""
    return Path(os.environ.get("EDGERT_CACHE_DIR") or Path.home() / ".cache" / "edgert")


def _cpu_fingerprint() -> str | None:
    """The CPU model and feature flags from /proc/cpuinfo (what the compiled code may use), or None
    when they cannot be read (then no AOT library is trusted)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    keep = ("model name", "flags", "features", "cpu implementer", "cpu architecture", "cpu part",
            "cpu variant")
    facts = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in keep:
            facts.add(f"{key}={' '.join(sorted(value.split()))}")
    if not facts:
        return None
    return "\n".join(sorted(facts))


def sources_digest() -> str:
    """Hash of every kernel source file (a kernel edit makes an old library stale)."""
    h = hashlib.sha256()
    for path in sorted(_KERNEL_DIR.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def host_tag() -> str | None:
    """The library directory name for this host and these kernel sources, or None."""
    cpu = _cpu_fingerprint()
    if cpu is None:
        return None
    h = hashlib.sha256()
    for part in (cpu, platform.machine(), sys.implementation.cache_tag, np.__version__.split(".")[0],
                 sources_digest()):
        h.update(part.encode())
        h.update(b"\0")
    return f"{platform.machine()}-{sys.implementation.cache_tag}-{h.hexdigest()[:16]}"


def library_dir() -> Path | None:
    tag = host_tag()
    return None if tag is None else cache_root() / "aot" / tag


def read_manifest(directory: Path) -> dict | None:
    """The manifest of a library directory, or None if there is none or it does not fit this host."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    if not (directory / str(manifest.get("file", ""))).is_file():
        return None
    return manifest


_LIBRARY: dict = {}  # the loaded library of this process: {"dir", "manifest", "module", "table"}


def enabled() -> bool:
    """``EDGERT_AOT=0`` turns the AOT library off (every kernel then goes through numba's JIT)."""
    return os.environ.get("EDGERT_AOT", "1") != "0"


def _library():
    if "manifest" not in _LIBRARY:
        directory = library_dir() if enabled() else None
        manifest = read_manifest(directory) if directory is not None else None
        _LIBRARY.update(dir=directory, manifest=manifest, module=None,
                        table={(e["kernel"], e["key"]): e["symbol"] for e in (manifest or {}).get("entries", [])})
    return _LIBRARY


def host_library_target():
    """(vector width, has FMA) the host's AOT library was built with, or None when there is none."""
    manifest = _library()["manifest"]
    if manifest is None:
        return None
    return int(manifest["vector_width"]), bool(manifest["has_fma"])


def forget() -> None:
    """Drop what this process knows of the library (after a build; tests)."""
    _LIBRARY.clear()


def _module():
    """The library's extension module, or None (with a warning, once) when it cannot be loaded: a
    damaged or foreign file must cost the JIT's start, never a crash."""
    lib = _library()
    if lib["module"] is None and lib["table"]:
        manifest = lib["manifest"]
        path = lib["dir"] / manifest["file"]
        try:
            # dlopen of a truncated or altered file can kill the process (SIGBUS), so check it first.
            data = path.read_bytes()
            if len(data) != manifest.get("size") or hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
                raise ImportError("its size or checksum differs from the manifest (damaged or replaced)")
            spec = importlib.util.spec_from_file_location(manifest["module"], path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            missing = sorted({e for e in lib["table"].values() if not hasattr(module, e)})
            if missing:
                raise ImportError(f"entry points {missing[:3]} missing")
        except (ImportError, OSError, AttributeError) as exc:
            import warnings
            warnings.warn(f"edgert: the AOT kernel library {path} cannot be loaded ({exc}); kernels use the "
                          "numba JIT. Rebuild it with `edgert warm MODEL`.", RuntimeWarning, stacklevel=3)
            lib["table"] = {}
            return None
        lib["module"] = module
    return lib["module"]


# --- argument types ------------------------------------------------------------------------------
class Unsupported(Exception):
    """A value whose numba type ``arg_key`` does not model (the step stays on the JIT)."""


_INT64 = (-(1 << 63), (1 << 63) - 1)


def value_key(value):
    """A JSON-able identity of numba's type for ``value`` (same key <=> same numba type)."""
    if isinstance(value, np.ndarray):
        if type(value) not in (np.ndarray, np.memmap) or not value.dtype.isnative:
            raise Unsupported(f"array of type {type(value).__name__} / dtype {value.dtype}")
        if value.dtype.kind not in "biuf" or value.dtype.fields is not None:
            raise Unsupported(f"dtype {value.dtype}")
        flags = value.flags
        if not flags.aligned:
            raise Unsupported("unaligned array")
        layout = "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"  # numba's map_layout
        return ["a", value.dtype.name, value.ndim, layout, not flags.writeable]
    if isinstance(value, (bool, np.bool_)):
        return ["s", "bool"]
    if isinstance(value, int) and not isinstance(value, np.integer):
        if not _INT64[0] <= value <= _INT64[1]:
            raise Unsupported("integer beyond int64")
        return ["s", "int64"]
    if isinstance(value, float):
        return ["s", "float64"]
    if isinstance(value, (np.integer, np.floating)):
        return ["s", value.dtype.name]
    if value is None:
        return ["none"]
    if isinstance(value, tuple):
        return ["t", [value_key(v) for v in value]]
    raise Unsupported(f"argument of type {type(value).__name__}")


def args_key(args) -> str:
    """The lookup key of a whole argument tuple (raises Unsupported)."""
    return json.dumps([value_key(a) for a in args], separators=(",", ":"))


def kernel_name(fn) -> str | None:
    """'module:function' of a kernel (a LazyKernel record or a numba dispatcher), else None."""
    py_func = getattr(fn, "py_func", None)
    if py_func is None:
        return None
    return f"{py_func.__module__}:{py_func.__name__}"


def lookup(fn, args):
    """The AOT-compiled function for calling kernel ``fn`` with ``args``, or None."""
    lib = _library()
    if not lib["table"]:
        return None
    name = kernel_name(fn)
    if name is None:
        return None
    try:
        key = args_key(args)
    except Unsupported:
        return None
    symbol = lib["table"].get((name, key))
    module = None if symbol is None else _module()
    return None if module is None else getattr(module, symbol)
