"""Static memory planning: every activation gets a fixed offset in one arena before the first run.

Algorithm (TFLite's ArenaPlanner / Pisarchyk & Lee "greedy by size"): each buffer has a live interval
[first step, last step]. Buffers are placed largest first, each at the lowest-waste gap between
already placed buffers whose intervals overlap its own, else above the highest of them. The arena
size is the high-water mark. The lower bound is the largest total size live at any one step; no
plan can beat it, so ``arena / lower_bound`` says how good the plan is.

On several threads one more rule (``reuse_gap``): a buffer that every worker read (the input of a
sparse 1x1 split by output channels) is not reused, for ``REUSE_GAP`` steps after its last read, by
a buffer that workers write in bands with little arithmetic per byte (an NCHW depthwise conv's
output). The bytes are then in both cores' caches, and each core's first write to a line has to
take it from the other: pose_detection's 480x14x14 depthwise convs took as long on 2 threads as on
one when their output landed there (0.070 ms both), and scaled 1.88x elsewhere. The rule costs
arena bytes, so it is used only when the memory budget allows (``prepare_graph``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 64
# Steps a shared-read buffer stays out of reach of band writers. pose_detection at 2 threads
# (2026-11-27, same-run medians): gap 0 5.37-5.51 ms, 3 5.29-5.32, 8 5.21-5.26; the arena stays
# 4.3 MB at all three. A prototype that also kept out every spmm output needed 6.9 MB at gap 8.
REUSE_GAP = 8


def align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Buffer:
    name: str
    size: int
    first: int
    last: int
    offset: int = -1
    shared_read: bool = False  # every worker read all of it (see REUSE_GAP)
    band_write: bool = False  # written by workers in bands, little arithmetic per byte


@dataclass
class MemoryPlan:
    buffers: list
    arena_bytes: int
    lower_bound: int
    strategy: str = ""
    notes: dict = field(default_factory=dict)
    layout: object = None  # runtime.layout.LayoutPlan, with every buffer's TensorInfo (set by prepare_graph)

    def offset_of(self, name: str) -> int:
        return self._index[name].offset

    def __post_init__(self):
        self._index = {b.name: b for b in self.buffers}


def lower_bound(buffers) -> int:
    if not buffers:
        return 0
    steps = max(b.last for b in buffers) + 1
    live = [0] * (steps + 1)
    for b in buffers:
        for s in range(max(b.first, 0), b.last + 1):
            live[s] += align(b.size)
    return max(live)


def _apart(a: Buffer, b: Buffer, gap: int) -> bool:
    """May a and b not share bytes? Both live at once, or (reuse_gap) one was read by every worker
    less than ``gap`` steps before the other is written in bands."""
    if a.first <= b.last and b.first <= a.last:
        return True
    return gap > 0 and ((a.shared_read and b.band_write and a.last < b.first <= a.last + gap)
                        or (b.shared_read and a.band_write and b.last < a.first <= b.last + gap))


def _place(buffers, order, reuse_gap: int = 0) -> int:
    placed: list = []
    top = 0
    for b in order:
        size = align(b.size)
        overlapping = sorted((p for p in placed if _apart(p, b, reuse_gap)), key=lambda p: p.offset)
        best, best_waste, cursor = None, None, 0
        for p in overlapping:
            hole = p.offset - cursor
            if hole >= size and (best_waste is None or hole - size < best_waste):
                best, best_waste = cursor, hole - size
            cursor = max(cursor, p.offset + align(p.size))
        b.offset = best if best is not None else cursor
        top = max(top, b.offset + size)
        placed.append(b)
    return top


def _best(buffers, gap: int):
    candidates = {
        "greedy-by-size": sorted(buffers, key=lambda b: (-b.size, b.first, b.name)),
        "greedy-by-breadth": sorted(buffers, key=lambda b: (b.first, -b.size, b.name)),
    }
    best = None
    for strategy, order in candidates.items():
        copies = [Buffer(b.name, b.size, b.first, b.last, -1, b.shared_read, b.band_write) for b in order]
        arena = _place(copies, copies, gap)
        if best is None or arena < best[1]:
            best = (strategy, arena, {c.name: c.offset for c in copies})
    return best


def plan_memory(buffers: list, reuse_gap: int = 0, arena_limit: int | None = None) -> MemoryPlan:
    """Place ``buffers`` (sizes in bytes, live steps inclusive). Tries two orders, keeps the smaller.

    With ``reuse_gap`` > 0 (several threads) shared-read buffers are kept apart from band-written
    ones for that many steps, unless the arena would then exceed ``arena_limit`` bytes (the memory
    budget's share): then the plain plan is used. ``notes`` record the choice and what it cost.
    """
    strategy, arena, offsets = _best(buffers, 0)
    notes = {}
    if reuse_gap > 0 and any(b.band_write for b in buffers) and any(b.shared_read for b in buffers):
        gapped = _best(buffers, reuse_gap)
        notes = {"reuse_gap": reuse_gap, "plain_arena_bytes": arena, "gap_arena_bytes": gapped[1]}
        if gapped[1] == arena or arena_limit is None or gapped[1] <= arena_limit:
            strategy, arena, offsets = gapped
            strategy += f", reuse gap {reuse_gap}"
        else:
            notes["reuse_gap"] = 0  # over the budget: the plain plan
    for b in buffers:
        b.offset = offsets[b.name]
    return MemoryPlan(list(buffers), arena, lower_bound(buffers), strategy, notes)


def check_no_overlap(plan: MemoryPlan) -> None:
    """Assert that no two buffers that are live at the same time share bytes (used by tests)."""
    bs = plan.buffers
    for i, a in enumerate(bs):
        for b in bs[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                if a.offset < b.offset + b.size and b.offset < a.offset + a.size and a.size and b.size:
                    raise AssertionError(f"buffers {a.name} and {b.name} overlap while both live")
