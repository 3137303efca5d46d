"""Static memory planning: every activation gets a fixed offset in one arena before the first run.

Algorithm (TFLite's ArenaPlanner / Pisarchyk & Lee "greedy by size"): each buffer has a live interval
[first step, last step]. Buffers are placed largest first, each at the lowest-waste gap between
already placed buffers whose intervals overlap its own, else above the highest of them. The arena
size is the high-water mark. The lower bound is the largest total size live at any one step; no
plan can beat it, so ``arena / lower_bound`` says how good the plan is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 64


def align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Buffer:
    name: str
    size: int
    first: int
    last: int
    offset: int = -1


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


def _place(buffers, order) -> int:
    placed: list = []
    top = 0
    for b in order:
        size = align(b.size)
        overlapping = sorted((p for p in placed if p.first <= b.last and b.first <= p.last), key=lambda p: p.offset)
        best, best_waste, cursor = None, None, 0
        for p in overlapping:
            gap = p.offset - cursor
            if gap >= size and (best_waste is None or gap - size < best_waste):
                best, best_waste = cursor, gap - size
            cursor = max(cursor, p.offset + align(p.size))
        b.offset = best if best is not None else cursor
        top = max(top, b.offset + size)
        placed.append(b)
    return top


def plan_memory(buffers: list) -> MemoryPlan:
    """Place ``buffers`` (sizes in bytes, live steps inclusive). Tries two orders, keeps the smaller."""
    candidates = {
        "greedy-by-size": sorted(buffers, key=lambda b: (-b.size, b.first, b.name)),
        "greedy-by-breadth": sorted(buffers, key=lambda b: (b.first, -b.size, b.name)),
    }
    best = None
    for strategy, order in candidates.items():
        copies = [Buffer(b.name, b.size, b.first, b.last) for b in order]
        arena = _place(copies, copies)
        if best is None or arena < best[1]:
            best = (strategy, arena, {c.name: c.offset for c in copies})
    strategy, arena, offsets = best
    for b in buffers:
        b.offset = offsets[b.name]
    return MemoryPlan(list(buffers), arena, lower_bound(buffers), strategy)


def check_no_overlap(plan: MemoryPlan) -> None:
    """Assert that no two buffers that are live at the same time share bytes (used by tests)."""
    bs = plan.buffers
    for i, a in enumerate(bs):
        for b in bs[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                if a.offset < b.offset + b.size and b.offset < a.offset + a.size and a.size and b.size:
                    raise AssertionError(f"buffers {a.name} and {b.name} overlap while both live")
