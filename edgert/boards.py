"""Board profiles: what edgert may assume about the machine it runs on.

A profile is a TOML file, ``boards/<id>.toml`` (fields documented in ``boards/README.md``). This module
loads and validates profiles and picks one for the running machine from ``/proc``.

Public API: ``BoardProfile`` (and its parts), ``load_profile``, ``list_profiles``, ``profile_dirs``,
``validate``, ``parse_bytes``, ``detect`` and ``Detection``.

Only the standard library is imported here: this module runs on every board, before numba is known
to work (a 32-bit userland has no numba at all, and detection has to say so).
"""

from __future__ import annotations

import os
import re
import struct
import sys
import typing
from dataclasses import MISSING, dataclass, field, fields, replace
from fractions import Fraction
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the backport
    import tomli as tomllib

try:
    from edgert.errors import BoardError
except ImportError:  # pragma: no cover - only while edgert/errors.py is not there yet

    class BoardError(ValueError):
        """A board profile is missing, malformed or inconsistent."""


# ----------------------------------------------------------------------------------------- sizes

_BINARY_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def parse_bytes(value: str | int) -> int:
    """Return the number of bytes in ``value``: an integer, or a string such as "1GiB" or "1.5 MiB".

    Only binary units (B, KiB, MiB, GiB, TiB) are accepted: "GB" is refused because boards are sold
    in GB that are really GiB, and guessing wrong by 7% is worse than asking. Raises ``ValueError``
    (``TypeError`` for a value that is neither a string nor an integer).
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f'expected a size such as "512MiB" or a number of bytes, got {_describe(value)}')
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    if value.strip().startswith("-"):
        raise ValueError(f"size must not be negative, got {value!r}")
    match = _SIZE_PATTERN.fullmatch(value)
    if not match:
        raise ValueError(f'not a size: {value!r} (write e.g. "512MiB" or "1.5GiB")')
    number, unit = match.groups()
    if unit.lower() not in _BINARY_UNITS:
        raise ValueError(f"unknown size unit {unit!r} in {value!r}; use B, KiB, MiB, GiB or TiB")
    scale = _BINARY_UNITS[unit.lower()]
    if scale == 1 and "." in number:
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(Fraction(number) * scale)  # "2.8GiB" rounds down to whole bytes


def format_bytes(size: int) -> str:
    """A short human size: 600MiB, 1.5GiB, 64B."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.2f}".rstrip("0").rstrip(".") + unit
    return f"{size}B"


def _parse_volume(value) -> tuple[int, int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)x(\d+)", value) if isinstance(value, str) else None
    if not match or 0 in (dims := tuple(int(d) for d in match.groups())):
        raise ValueError(f'expected a volume tile "DxHxW" of positive integers, e.g. "64x64x64", got {value!r}')
    return dims


def _bytes_field(**kw):
    return field(metadata={"parse": parse_bytes}, **kw)


# -------------------------------------------------------------------------------------- profile
# Each dataclass mirrors one table of the TOML file, so an error's field path ("memory.budget_bytes")
# is the same in the file and in Python.


@dataclass(frozen=True)
class Cluster:
    """CPUs sharing a core type and a clock domain (one cpufreq policy)."""

    core: str  # core type, e.g. "cortex-a76"
    cpu_ids: tuple[int, ...]  # Linux cpu numbers, as in /sys/devices/system/cpu/cpuN
    max_mhz: int
    sustained_mhz: int  # clock expected under a long load with the usual cooling


@dataclass(frozen=True)
class Simd:
    neon: bool  # AArch64 Advanced SIMD (cpuinfo "asimd")
    fp16_arith: bool  # ARMv8.2 half-precision arithmetic ("asimdhp")
    dotprod: bool  # ARMv8.2 int8 dot product ("asimddp")
    avx2: bool
    avx512: bool  # AVX-512 F/BW/CD/DQ/VL


@dataclass(frozen=True)
class Cpu:
    clusters: tuple[Cluster, ...]
    big_cpu_ids: tuple[int, ...]
    l1d_bytes: int = _bytes_field()  # per big core
    l2_bytes: int = _bytes_field()  # as seen by one big core (a shared L2 counts whole)
    l3_bytes: int = _bytes_field()  # 0 when there is none
    peak_gflops_per_core: float
    simd: Simd


@dataclass(frozen=True)
class Memory:
    ram_bytes: int = _bytes_field()
    budget_bytes: int = _bytes_field()  # what edgert may use in all: arenas, weights, caches


@dataclass(frozen=True)
class Runtime:
    default_threads: int
    pin_to_big_cores: bool
    numba_cpu_name: str  # LLVM CPU name for NUMBA_CPU_NAME


@dataclass(frozen=True)
class Tiles:
    volume: tuple[int, int, int] = field(metadata={"parse": _parse_volume})  # sliding-window ROI
    overlap: float  # fraction of the ROI shared by neighbouring windows, in [0, 1)


@dataclass(frozen=True)
class SparseCost:
    """Per-thread throughputs deciding dense vs CSR kernels for 1x1 convs."""

    dense_gflops: float
    sparse_useful_gflops: float  # useful FLOPs only: 2 * nnz * pixels / time
    crossover_sparsity: float  # = 1 - sparse_useful_gflops / dense_gflops

    def prefers_sparse(self, sparsity: float) -> bool:
        """True when a CSR kernel should beat the dense one on weights this sparse."""
        return sparsity > self.crossover_sparsity


@dataclass(frozen=True)
class DetectRules:
    models: tuple[str, ...] = ()  # substrings of /proc/device-tree/model, compared case-insensitively
    cpu_parts: tuple[str, ...] = ()  # the set of /proc/cpuinfo "CPU part" ids, used when no model matches
    fallback: bool = False  # chosen for its arch when nothing more specific matches


@dataclass(frozen=True)
class BoardProfile:
    id: str
    name: str
    soc: str
    arch: str  # "aarch64" or "x86_64"
    cpu: Cpu
    memory: Memory
    runtime: Runtime
    tiles: Tiles
    sparse: SparseCost
    detect: DetectRules = DetectRules()
    source: str = field(default="", metadata={"in_file": False})  # the file it was loaded from

    @property
    def little_cpu_ids(self) -> tuple[int, ...]:
        return tuple(c for cl in self.cpu.clusters for c in cl.cpu_ids if c not in self.cpu.big_cpu_ids)


# ------------------------------------------------------------------------------- reading a file


def _fail(path, where: str, problem: str) -> typing.NoReturn:
    raise BoardError(f"{path}: {where}: {problem}")


def _describe(value) -> str:
    return f"{value!r} ({type(value).__name__})"


def _build(cls, table, path, where: str):
    """Make a ``cls`` from a TOML table, driven by the dataclass's field types."""
    if not isinstance(table, dict):
        _fail(path, where or "file", f"expected a table, got {_describe(table)}")
    in_file = [f for f in fields(cls) if f.metadata.get("in_file", True)]
    known = {f.name for f in in_file}
    for key in table:
        if key not in known:
            _fail(path, f"{where}.{key}" if where else key, f"unknown key (known here: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in in_file:
        name = f"{where}.{f.name}" if where else f.name
        if f.name in table:
            values[f.name] = _convert(hints[f.name], f.metadata, table[f.name], path, name)
        elif f.default is MISSING and f.default_factory is MISSING:
            _fail(path, name, "missing")
    return cls(**values)


def _convert(kind, metadata, value, path, name: str):
    if "parse" in metadata:
        try:
            return metadata["parse"](value)
        except (ValueError, TypeError) as error:
            _fail(path, name, str(error))
    if isinstance(kind, type) and hasattr(kind, "__dataclass_fields__"):
        return _build(kind, value, path, name)
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, list):
            _fail(path, name, f"expected a list, got {_describe(value)}")
        item_kind = typing.get_args(kind)[0]
        return tuple(_convert(item_kind, {}, item, path, f"{name}[{i}]") for i, item in enumerate(value))
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, str):
        if not value.strip():
            _fail(path, name, "must not be empty")
        return value
    wanted = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]
    _fail(path, name, f"expected {wanted}, got {_describe(value)}")


# ------------------------------------------------------------------------------------ validation

# Cores edgert knows: "CPU part" id, and whether they have the ARMv8.2 FP16 arithmetic and dot product.
KNOWN_ARM_CORES = {
    "cortex-a53": ("0xd03", False),
    "cortex-a55": ("0xd05", True),
    "cortex-a57": ("0xd07", False),
    "cortex-a72": ("0xd08", False),
    "cortex-a76": ("0xd0b", True),
}
ARCHES = ("aarch64", "x86_64")
_ID_PATTERN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def validate(profile: BoardProfile, path=None) -> BoardProfile:
    """Check the rules that span fields; raise ``BoardError`` naming the file and the field."""
    where = path or profile.source or profile.id
    _check_identity(profile, path, where)
    _check_cpu(profile, where)
    _check_simd(profile, where)
    _check_memory_and_runtime(profile, where)
    _check_tiles_sparse_and_detect(profile, where)
    return profile


def _check_identity(profile: BoardProfile, path, where) -> None:
    if not _ID_PATTERN.fullmatch(profile.id):
        _fail(where, "id", f'{profile.id!r} is not a kebab-case id like "rpi-4-4gb"')
    if path is not None and Path(path).suffix == ".toml" and Path(path).stem != profile.id:
        _fail(where, "id", f"{profile.id!r} differs from the file name {Path(path).name!r}")
    if profile.arch not in ARCHES:
        _fail(where, "arch", f"{profile.arch!r} is not one of {', '.join(ARCHES)}")


def _check_cpu(profile: BoardProfile, where) -> None:
    cpu, simd = profile.cpu, profile.cpu.simd
    if not cpu.clusters:
        _fail(where, "cpu.clusters", "at least one cluster is needed")
    seen: set[int] = set()
    for i, cluster in enumerate(cpu.clusters):
        name = f"cpu.clusters[{i}]"
        if not cluster.cpu_ids:
            _fail(where, f"{name}.cpu_ids", "must list at least one cpu")
        for cpu_id in cluster.cpu_ids:
            if cpu_id < 0 or cpu_id in seen:
                _fail(where, f"{name}.cpu_ids", f"cpu {cpu_id} is negative or already in another cluster")
            seen.add(cpu_id)
        if cluster.max_mhz <= 0:
            _fail(where, f"{name}.max_mhz", "must be positive")
        if not 0 < cluster.sustained_mhz <= cluster.max_mhz:
            _fail(where, f"{name}.sustained_mhz", f"must be in 1..max_mhz ({cluster.max_mhz})")
        if profile.arch == "aarch64" and cluster.core in KNOWN_ARM_CORES:
            has_v82 = KNOWN_ARM_CORES[cluster.core][1]
            for feature in ("fp16_arith", "dotprod"):
                if getattr(simd, feature) and not has_v82:
                    _fail(where, f"cpu.simd.{feature}", f"is true but {cluster.core} ({name}) lacks it")

    fastest = max(cl.max_mhz for cl in cpu.clusters)
    big_cores = {c for cl in cpu.clusters if cl.max_mhz == fastest for c in cl.cpu_ids}
    if not cpu.big_cpu_ids or len(set(cpu.big_cpu_ids)) != len(cpu.big_cpu_ids):
        _fail(where, "cpu.big_cpu_ids", "must list each big cpu once")
    if stray := sorted(set(cpu.big_cpu_ids) - seen):
        _fail(where, "cpu.big_cpu_ids", f"cpus {stray} are in no cluster")
    if little := sorted(set(cpu.big_cpu_ids) - big_cores):
        _fail(where, "cpu.big_cpu_ids", f"cpus {little} belong to a slower cluster (little cores)")
    for name in ("l1d_bytes", "l2_bytes"):
        if getattr(cpu, name) == 0:
            _fail(where, f"cpu.{name}", "must be positive")
    if cpu.peak_gflops_per_core <= 0:
        _fail(where, "cpu.peak_gflops_per_core", "must be positive")


def _check_simd(profile: BoardProfile, where) -> None:
    simd = profile.cpu.simd
    arm_only, x86_only = ("neon", "fp16_arith", "dotprod"), ("avx2", "avx512")
    for feature in x86_only if profile.arch == "aarch64" else arm_only:
        if getattr(simd, feature):
            _fail(where, f"cpu.simd.{feature}", f"cannot be true on {profile.arch}")
    if profile.arch == "aarch64" and not simd.neon:
        _fail(where, "cpu.simd.neon", "every supported aarch64 core has NEON")
    if simd.avx512 and not simd.avx2:
        _fail(where, "cpu.simd.avx2", "must be true when avx512 is")


def _check_memory_and_runtime(profile: BoardProfile, where) -> None:
    memory, runtime, big = profile.memory, profile.runtime, profile.cpu.big_cpu_ids
    if memory.ram_bytes <= 0:
        _fail(where, "memory.ram_bytes", "must be positive")
    if not 0 < memory.budget_bytes <= 0.9 * memory.ram_bytes:
        _fail(
            where,
            "memory.budget_bytes",
            f"must be positive and at most 90% of ram_bytes "
            f"({format_bytes(memory.ram_bytes)}), leaving room for the OS",
        )

    if not 1 <= runtime.default_threads <= len(big):
        _fail(where, "runtime.default_threads", f"must be 1..{len(big)} (the big cores only)")
    if profile.little_cpu_ids and not runtime.pin_to_big_cores:
        _fail(
            where,
            "runtime.pin_to_big_cores",
            "must be true on a board with little cores, or the scheduler puts edgert's threads on them",
        )
    if profile.arch == "aarch64":
        allowed = {"generic"} | {cl.core for cl in profile.cpu.clusters}
        if runtime.numba_cpu_name not in allowed:
            _fail(
                where,
                "runtime.numba_cpu_name",
                f"{runtime.numba_cpu_name!r} must be one of "
                f"{', '.join(sorted(allowed))}: code for another core may not run here (SIGILL)",
            )


def _check_tiles_sparse_and_detect(profile: BoardProfile, where) -> None:
    if not 0 <= profile.tiles.overlap < 1:
        _fail(where, "tiles.overlap", "must be in [0, 1)")

    sparse = profile.sparse
    if sparse.dense_gflops <= 0 or sparse.sparse_useful_gflops <= 0:
        _fail(where, "sparse", "dense_gflops and sparse_useful_gflops must be positive")
    expected = 1 - sparse.sparse_useful_gflops / sparse.dense_gflops
    if not 0 < sparse.crossover_sparsity < 1 or abs(sparse.crossover_sparsity - expected) > 0.02:
        _fail(
            where,
            "sparse.crossover_sparsity",
            f"{sparse.crossover_sparsity} should be 1 - sparse_useful_gflops / dense_gflops = {expected:.3f}",
        )

    parts_here = {KNOWN_ARM_CORES[cl.core][0] for cl in profile.cpu.clusters if cl.core in KNOWN_ARM_CORES}
    for part in profile.detect.cpu_parts:
        if not re.fullmatch(r"0x[0-9a-f]{3}", part):
            _fail(where, "detect.cpu_parts", f'{part!r} is not a lower-case "CPU part" id like "0xd08"')
        if parts_here and part not in parts_here:
            _fail(where, "detect.cpu_parts", f"{part} is the part id of no cluster's core")


# ------------------------------------------------------------------------------------- finding


def profile_dirs() -> list[Path]:
    """Directories searched for ``<id>.toml``, first match wins.

    1. every directory in ``EDGERT_BOARDS_DIR`` (os.pathsep separated): site-specific boards;
    2. ``boards/`` at the root of a source checkout, next to the ``edgert`` package;
    3. ``edgert/_boards/``, where an installed wheel carries the same files as package data.
    """
    candidates = [Path(p) for p in os.environ.get("EDGERT_BOARDS_DIR", "").split(os.pathsep) if p]
    package_dir = Path(__file__).resolve().parent
    # An installed edgert sits in site-packages, whose "boards" would belong to someone else.
    if package_dir.parent.name not in ("site-packages", "dist-packages"):
        candidates.append(package_dir.parent / "boards")
    candidates.append(package_dir / "_boards")
    found: list[Path] = []
    for directory in candidates:  # in a checkout, _boards is a symlink to boards/: list it once
        if directory.is_dir() and directory.resolve() not in {d.resolve() for d in found}:
            found.append(directory)
    return found


def list_profiles() -> list[str]:
    """Ids of every profile found in ``profile_dirs()``, sorted."""
    return sorted({p.stem for d in profile_dirs() for p in d.glob("*.toml")})


def _profile_path(board) -> Path:
    text = os.fspath(board)
    if isinstance(board, os.PathLike) or os.sep in text or "/" in text or text.endswith(".toml"):
        path = Path(text)
        if not path.is_file():
            raise BoardError(f"{path}: no such board profile file")
        return path
    if not _ID_PATTERN.fullmatch(text):
        raise BoardError(f'{text!r} is not a board id (ids look like "rpi-4-4gb")')
    for directory in profile_dirs():
        if (path := directory / f"{text}.toml").is_file():
            return path
    known = ", ".join(list_profiles()) or "none"
    searched = ", ".join(map(str, profile_dirs())) or "no boards directory found; set EDGERT_BOARDS_DIR"
    raise BoardError(f"unknown board {text!r}; known boards: {known} (searched: {searched})")


def load_profile(board) -> BoardProfile:
    """Load and validate a profile, given its id ("rpi-4-4gb") or the path of a .toml file."""
    path = _profile_path(board)
    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh)
    except OSError as error:
        raise BoardError(f"{path}: cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise BoardError(f"{path}: not valid TOML: {error}") from None
    profile = replace(_build(BoardProfile, table, path, ""), source=str(path))
    return validate(profile, path)


def _all_profiles() -> list[BoardProfile]:
    return [load_profile(board_id) for board_id in list_profiles()]


# ------------------------------------------------------------------------------------ detection

_MACHINE_FAMILIES = {"aarch64": "aarch64", "arm64": "aarch64", "x86_64": "x86_64", "amd64": "x86_64"}
# The cpuinfo word that proves each SIMD feature a profile may claim.
_FEATURE_WORDS = {"neon": "asimd", "fp16_arith": "asimdhp", "dotprod": "asimddp", "avx2": "avx2", "avx512": "avx512f"}
# A profile whose RAM is this much above MemTotal is for a bigger variant: its budget gets scaled down.
_RAM_SLACK = 1.3


@dataclass(frozen=True)
class Detection:
    """What ``detect`` read from the machine, and how it chose a profile."""

    model: str | None  # /proc/device-tree/model, None without a device tree (x86)
    cpu_parts: tuple[str, ...]  # distinct "CPU part" ids, sorted
    cpu_count: int  # "processor" entries in /proc/cpuinfo
    cpu_features: frozenset[str]  # "Features" (ARM) or "flags" (x86) words
    mem_total_bytes: int | None
    machine: str  # the hardware's architecture, as profiles name it ("aarch64", "x86_64")
    kernel_machine: str  # os.uname().machine: "aarch64", "armv7l", "x86_64"...
    userland_bits: int  # 32 or 64: the bitness of this Python, not of the kernel
    matched_by: str  # "model", "cpu", "fallback" or "none"
    warnings: tuple[str, ...] = ()

    @property
    def numba_supported(self) -> bool:
        """numba ships wheels for 64-bit x86 and ARM only (no armv7l at all)."""
        return self.userland_bits == 64 and self.machine in ARCHES and self.kernel_machine in _MACHINE_FAMILIES


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _cpuinfo_entries(text: str) -> list[dict[str, str]]:
    entries: list[dict[str, str]] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep:
            continue
        if key == "processor":
            entries.append({})
        if entries:
            entries[-1][key] = value.strip()
    return entries


def _mem_total(text: str | None) -> int | None:
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text or "", re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def _pick_by_ram(candidates: list[BoardProfile], mem_total: int | None) -> BoardProfile:
    """The smallest RAM variant that holds MemTotal (which is always below the nominal size)."""
    by_size = sorted(candidates, key=lambda p: (p.memory.ram_bytes, p.id))
    if mem_total is None:
        return by_size[0]
    return next((p for p in by_size if p.memory.ram_bytes >= mem_total), by_size[-1])


def _shrink_to(profile: BoardProfile, mem_total: int) -> BoardProfile:
    share = profile.memory.budget_bytes / profile.memory.ram_bytes
    memory = Memory(ram_bytes=mem_total, budget_bytes=int(mem_total * share))
    return replace(profile, memory=memory)


_NEEDS_64_BIT = "numba has no 32-bit ARM wheels, so edgert cannot run here; install a 64-bit OS (e.g. Raspberry Pi OS)"


def _bitness(kernel_machine: str, bits: int, parts, entries) -> tuple[str, list[str]]:
    """The hardware's architecture, and a warning when the OS cannot run numba on it."""
    machine = _MACHINE_FAMILIES.get(kernel_machine, kernel_machine)
    armv8_parts = {part for part, _ in KNOWN_ARM_CORES.values()}
    on_armv8 = set(parts) & armv8_parts or any(e.get("CPU architecture") == "8" for e in entries)
    if kernel_machine.startswith("armv") and on_armv8:
        # A 64-bit board booted with a 32-bit kernel, which may even call its cores "ARMv7".
        return "aarch64", [f"32-bit kernel ({kernel_machine}) on a 64-bit CPU: {_NEEDS_64_BIT}"]
    if machine == "aarch64" and bits == 32:
        return machine, [f"32-bit userland on a 64-bit {kernel_machine} kernel: {_NEEDS_64_BIT}"]
    if machine == "x86_64" and bits == 32:
        return machine, ["32-bit Python on an x86_64 kernel: numba needs a 64-bit Python"]
    return machine, []


def _candidates(profiles: list[BoardProfile], model: str | None, parts, cpu_count: int):
    """(how they matched, the profiles that match best): by model, else by CPU, else the fallback."""
    if model:
        scores = {
            p.id: max((len(s) for s in p.detect.models if s.lower() in model.lower()), default=0) for p in profiles
        }
        best = max(scores.values(), default=0)
        if best:
            return "model", [p for p in profiles if scores[p.id] == best]
    if parts:
        same_cpu = [
            p
            for p in profiles
            if set(p.detect.cpu_parts) == set(parts) and sum(len(cl.cpu_ids) for cl in p.cpu.clusters) == cpu_count
        ]
        if same_cpu:
            return "cpu", same_cpu
    fallbacks = [p for p in profiles if p.detect.fallback]
    return ("fallback" if fallbacks else "none"), fallbacks


def detect(
    proc_root="/",
    *,
    kernel_machine: str | None = None,
    userland_bits: int | None = None,
) -> tuple[BoardProfile | None, Detection]:
    """Pick the profile for this machine from ``<proc_root>/proc/{device-tree/model,cpuinfo,meminfo}``.

    Order: a device-tree model substring (longest wins), else the exact set of "CPU part" ids with the
    same cpu count, else the arch's fallback profile. Among RAM variants, MemTotal decides.
    ``kernel_machine`` and ``userland_bits`` default to this process's (os.uname, pointer size); tests
    override them to replay another machine. Returns ``(None, detection)`` for an unknown arch.
    """
    proc = Path(proc_root) / "proc"
    model = (_read_text(proc / "device-tree" / "model") or "").strip("\x00 \n") or None
    entries = _cpuinfo_entries(_read_text(proc / "cpuinfo") or "")
    parts = tuple(sorted({e["CPU part"].lower() for e in entries if "CPU part" in e}))
    features = frozenset(w for e in entries for w in (e.get("Features") or e.get("flags") or "").split())
    mem_total = _mem_total(_read_text(proc / "meminfo"))
    kernel_machine = kernel_machine or os.uname().machine
    bits = userland_bits or struct.calcsize("P") * 8

    machine, warnings = _bitness(kernel_machine, bits, parts, entries)
    profiles = [p for p in _all_profiles() if p.arch == machine]
    matched_by, candidates = _candidates(profiles, model, parts, len(entries))
    profile = _pick_by_ram(candidates, mem_total) if candidates else None

    if profile is None:
        warnings.append(f"no edgert profile for architecture {kernel_machine!r}")
    elif matched_by == "cpu":
        warnings.append(f"board model {model!r} is in no profile; chose {profile.id} by its CPU ({', '.join(parts)})")
    elif matched_by == "fallback" and machine != "x86_64":  # x86 has no board identity to match
        warnings.append(
            f"no profile matches this board (model {model!r}, CPU parts {', '.join(parts) or 'none'}); "
            f"using the conservative {profile.id} profile"
        )
    if profile is not None and mem_total and profile.memory.ram_bytes > _RAM_SLACK * mem_total:
        warnings.append(
            f"MemTotal is {format_bytes(mem_total)} but {profile.id} assumes "
            f"{format_bytes(profile.memory.ram_bytes)}; memory budget scaled down"
        )
        profile = _shrink_to(profile, mem_total)
    # A 32-bit reader sees the compat feature names ("neon"), which say nothing about AArch64 SIMD.
    native_view = bits == 64 and ("asimd" in features or "flags" in (entries[0] if entries else {}))
    for feature, word in _FEATURE_WORDS.items():
        if profile is not None and native_view and getattr(profile.cpu.simd, feature) and word not in features:
            warnings.append(
                f"{profile.id} expects {feature} but /proc/cpuinfo lacks {word!r}; kernels using it would die with SIGILL"
            )

    detection = Detection(
        model=model,
        cpu_parts=parts,
        cpu_count=len(entries),
        cpu_features=features,
        mem_total_bytes=mem_total,
        machine=machine,
        kernel_machine=kernel_machine,
        userland_bits=bits,
        matched_by=matched_by,
        warnings=tuple(warnings),
    )
    return profile, detection
