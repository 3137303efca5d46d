"""Threads, core pinning and the memory budget, decided from a board profile and explicit settings.

Explicit arguments always win over the profile; the profile wins over the machine's defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import BudgetError, InputError


def available_cpus() -> set:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


@dataclass
class Resources:
    threads: int
    budget_bytes: int | None
    board: object | None  # BoardProfile
    pinned_cpus: tuple = ()


def resolve_board(board):
    """A BoardProfile from an id, a path, a profile, or "auto" (detect this machine); None stays None."""
    if board is None:
        return None
    from ..boards import BoardProfile, detect, load_profile
    if isinstance(board, BoardProfile):
        return board
    if board == "auto":
        profile, _ = detect()
        return profile
    return load_profile(board)


def parse_budget(value):
    if value is None or isinstance(value, int):
        return value
    from ..boards import parse_bytes
    try:
        return parse_bytes(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad memory budget {value!r}: {exc}", hint='write it like "1GiB" or "600MiB"') from None


def resolve_resources(board=None, threads=None, memory_budget=None, pin=None) -> Resources:
    profile = resolve_board(board)
    cpus = available_cpus()
    if threads is not None:
        threads = int(threads)
        if threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}")
    elif profile is not None:
        threads = profile.runtime.default_threads
    else:
        threads = len(cpus)
    # More threads than CPUs only oversubscribes; a profile for a bigger board must not cause that.
    threads = max(1, min(threads, len(cpus)))
    budget = parse_budget(memory_budget)
    if budget is None and profile is not None:
        budget = profile.memory.budget_bytes
    pinned = ()
    if pin is None:
        pin = bool(profile and profile.runtime.pin_to_big_cores)
    if pin and profile is not None:
        big = sorted(set(profile.cpu.big_cpu_ids) & cpus)
        if big:
            # Process-wide: numba's worker threads inherit the mask when the pool starts.
            os.sched_setaffinity(0, big)
            pinned = tuple(big)
            threads = min(threads, len(big))
    return Resources(threads, budget, profile, pinned)


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_budget(resources: Resources, arena: int, packed: int, weights: int, file=None) -> dict:
    """Compare what the model needs with the budget; over budget is a BudgetError saying what to do.

    Without a budget, the machine's physical memory is the limit: a (hostile or mistaken) model that
    declares a huge activation gets a clear error instead of an allocation that gets the process
    OOM-killed.
    """
    need = arena + packed + weights
    fit = {"budget_bytes": resources.budget_bytes, "need_bytes": need, "arena_bytes": arena,
           "packed_bytes": packed, "weight_bytes": weights,
           "fits": resources.budget_bytes is None or need <= resources.budget_bytes}
    ram = physical_memory()
    if resources.budget_bytes is None and ram and arena + packed > ram:
        from ..boards import format_bytes as fmt
        raise BudgetError(f"needs {fmt(arena + packed)} of working memory (arena {fmt(arena)} + packed weights "
                          f"{fmt(packed)}) but this machine has {fmt(ram)} of RAM", file=file,
                          hint="check the model's input shapes; reconvert with a smaller --input-shape")
    if not fit["fits"]:
        from ..boards import format_bytes as fmt
        where = f" of board {resources.board.id}" if resources.board is not None else ""
        raise BudgetError(
            f"needs {fmt(need)} (arena {fmt(arena)} + packed weights {fmt(packed)} + mapped weights "
            f"{fmt(weights)}) but the memory budget{where} is {fmt(resources.budget_bytes)}", file=file,
            hint="reconvert with --fp16, use a smaller input size or window, or a board with more memory")
    return fit
