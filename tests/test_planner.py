"""The static memory planner: no live buffers overlap, the arena is never below the lower bound."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from converters.builder import GraphBuilder
from edgert.runtime.planner import Buffer, align, check_no_overlap, lower_bound, plan_memory
from edgert.runtime.session import Session


@st.composite
def buffer_sets(draw):
    n = draw(st.integers(1, 40))
    out = []
    for i in range(n):
        first = draw(st.integers(0, 30))
        out.append(Buffer(f"b{i}", draw(st.integers(0, 5000)), first, first + draw(st.integers(0, 10))))
    return out


@pytest.mark.arm
@given(buffer_sets())
def test_plan_never_overlaps_and_respects_the_bound(buffers):
    plan = plan_memory(buffers)
    check_no_overlap(plan)
    assert plan.arena_bytes >= plan.lower_bound == lower_bound(buffers)
    assert all(b.offset % 64 == 0 for b in plan.buffers)
    assert plan.arena_bytes <= sum(align(b.size) for b in buffers)


@pytest.mark.arm
def test_chain_reuses_memory():
    # A chain a -> b -> c -> d: only two neighbours are ever live, so two slots suffice.
    bufs = [Buffer(n, 1024, i, i + 1) for i, n in enumerate("abcd")]
    plan = plan_memory(bufs)
    assert plan.arena_bytes == plan.lower_bound == 2048


def test_check_no_overlap_detects_a_bad_plan():
    bufs = [Buffer("a", 64, 0, 2, 0), Buffer("b", 64, 1, 3, 0)]
    from edgert.runtime.planner import MemoryPlan
    with pytest.raises(AssertionError):
        check_no_overlap(MemoryPlan(bufs, 64, 128))


@pytest.mark.arm
def test_inplace_and_views_share_one_buffer_and_results_stay_right():
    b = GraphBuilder()
    b.add_input("x", (4, 8))
    b.add_node("Relu", ["x"], ["r"])
    b.add_node("Sigmoid", ["r"], ["s"])
    b.add_node("Identity", ["s"], ["t"])
    b.add_node("Add", ["t", "r"], ["u"])  # r is still live here: Sigmoid must not have overwritten it
    b.add_output("u")
    sess = Session(b.finish(), threads=1)
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    r = np.maximum(x, 0)
    np.testing.assert_allclose(sess.run({"x": x})["u"], 1 / (1 + np.exp(-r)) + r, rtol=1e-6)
    check_no_overlap(sess.plan)
    assert sess.plan.arena_bytes == sess.plan.lower_bound


def shares_bytes(a, b):
    return a.size and b.size and a.offset < b.offset + b.size and b.offset < a.offset + a.size


def check_reuse_gap(plan, gap):
    """No buffer written in bands shares bytes with one every worker read less than gap steps before."""
    for a in plan.buffers:
        for b in plan.buffers:
            if a.shared_read and b.band_write and a.last < b.first <= a.last + gap:
                assert not shares_bytes(a, b), (a, b)


@st.composite
def flagged_buffer_sets(draw):
    out = draw(buffer_sets())
    for b in out:
        b.shared_read, b.band_write = draw(st.booleans()), draw(st.booleans())
    return out


@pytest.mark.arm
@given(flagged_buffer_sets(), st.integers(1, 10))
def test_reuse_gap_keeps_shared_reads_from_band_writes(buffers, gap):
    plan = plan_memory(buffers, reuse_gap=gap)
    check_no_overlap(plan)
    check_reuse_gap(plan, gap)
    assert plan.arena_bytes >= plan.lower_bound


def mbconv_chain(n=4):
    """A chain of depthwise (band-written, read by every worker of the next 1x1) and 1x1 outputs:
    d0 -> p0 -> d1 -> p1 ...; the plain plan puts d1 where d0 was (two slots suffice)."""
    bufs = []
    for i in range(n):
        bufs.append(Buffer(f"d{i}", 1024, 2 * i, 2 * i + 1, shared_read=True, band_write=True))
        bufs.append(Buffer(f"p{i}", 1024, 2 * i + 1, 2 * i + 2))
    return bufs


def test_reuse_gap_moves_a_depthwise_output_off_the_last_one():
    plain = plan_memory(mbconv_chain())
    assert plain.offset_of("d1") == plain.offset_of("d0") and plain.notes == {}
    gapped = plan_memory(mbconv_chain(), reuse_gap=3)
    assert gapped.offset_of("d1") != gapped.offset_of("d0")
    check_reuse_gap(gapped, 3)
    assert gapped.notes["plain_arena_bytes"] == plain.arena_bytes == 2048
    assert gapped.arena_bytes == gapped.notes["gap_arena_bytes"] > 2048 and "reuse gap 3" in gapped.strategy


def test_reuse_gap_gives_way_to_the_memory_budget():
    plan = plan_memory(mbconv_chain(), reuse_gap=3, arena_limit=2048)
    assert plan.arena_bytes == 2048 and plan.notes["reuse_gap"] == 0
    assert plan.notes["gap_arena_bytes"] > 2048
    assert plan_memory(mbconv_chain(), reuse_gap=3, arena_limit=10 ** 6).notes["reuse_gap"] == 3
