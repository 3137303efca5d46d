"""The layout planner folds a blocked PRelu into the blocked conv before it (runtime/layout.py,
``fuse_prelu``): which pairs fuse, and that a BlazeNet-like network gives its ops' reference outputs
with the slope applied by the conv tiles, at 1 and 2 threads."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from converters.builder import GraphBuilder
from edgert.kernels.work import PARALLEL_MIN_FLOATS
from edgert.kernels.simd import VW
from edgert.runtime.layout import plan_layout
from edgert.runtime.prepare import infer_graph
from edgert.runtime.reference import run_reference
from edgert.runtime.session import Session
from tests.helpers import assert_close

NONE = {"activation": "none", "act_a": 0.0, "act_b": 0.0}


def _conv(b, rng, x, cin, cout, k=1, stride=1, group=1, residual=None):
    w = b.add_const(b.unique("w"), (rng.standard_normal((cout, cin // group, k, k)) / np.sqrt(cin // group * k * k))
                    .astype(np.float32))
    bias = b.add_const(b.unique("b"), rng.standard_normal(cout).astype(np.float32) * 0.1)
    out = b.unique("conv")
    b.add_node("Conv", [x, w, bias] + ([residual] if residual else []), [out],
               {"strides": [stride, stride], "pads": [k // 2] * 4, "group": group, **NONE})
    return out


def _prelu(b, rng, x, C, residual=None, one_slope=False):
    shape = (1,) if one_slope else (C, 1, 1)
    slope = b.add_const(b.unique("slope"), rng.uniform(-0.4, 0.4, shape).astype(np.float32))
    out = b.unique("prelu")
    b.add_node("PRelu", [x, slope] + ([residual] if residual else []), [out])
    return out


def blaze_net(C0=3, C1=VW + 3, C2=2 * VW, H=20, seed=0):
    """stem -> PRelu; (depthwise -> 1x1) -> PRelu(+ shortcut); maxpool -> pad channels; depthwise s2
    -> 1x1 -> PRelu(+ padded shortcut), one slope value; a 1x1 whose output a PRelu and the caller
    read (stays unfused); resize -> NHWC head."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.add_input("image", (1, C0, H, H))
    t = _prelu(b, rng, _conv(b, rng, x, C0, C1, k=3, stride=2), C1)
    d = _conv(b, rng, t, C1, C1, k=3, group=C1)
    t = _prelu(b, rng, _conv(b, rng, d, C1, C1), C1, residual=t)
    p = b.unique("pool")
    b.add_node("MaxPool", [t], [p], {"kernel": [2, 2], "strides": [2, 2]})
    q = b.unique("padded")
    b.add_node("Pad", [p], [q], {"pads": [0, 0, 0, 0, 0, C2 - C1, 0, 0]})
    d = _conv(b, rng, t, C1, C1, k=3, stride=2, group=C1)
    t = _prelu(b, rng, _conv(b, rng, d, C1, C2), C2, residual=q, one_slope=True)
    shared = _conv(b, rng, t, C2, C2)
    t = _prelu(b, rng, shared, C2)
    up = b.unique("up")
    b.add_node("Resize", [t], [up], {"mode": "linear", "scales": [1.0, 1.0, 2.0, 2.0]})
    b.add_node("Transpose", [up], ["nhwc"], {"perm": [0, 2, 3, 1]})
    b.add_output("nhwc")
    b.add_output(shared)
    return b.finish()


def _feeds(graph, seed=1):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(graph.tensors[n].shape).astype(np.float32) for n in graph.inputs}


@pytest.mark.arm
def test_prelus_fold_into_the_convs_that_only_they_read():
    graph = blaze_net()
    plan = plan_layout(graph, infer_graph(graph), "auto", VW)
    prelus = [n.name for n in graph.nodes if n.op == "PRelu"]
    # Stem, 1x1 + shortcut, 1x1 + padded shortcut fuse; the last PRelu's conv is also a graph output.
    assert plan.fused == 3
    left = [n for n, *_ in plan.steps if n.op == "PRelu"]
    assert [n.name for n in left] == prelus[-1:]
    fused = [(n, attrs, ins) for n, _op, attrs, ins in plan.steps if n.op == "Conv" and attrs["activation"] == "prelu"]
    assert len(fused) == 3
    for node, _attrs, ins in fused:
        assert node.inputs[4] in graph.consts and len(ins) == 5  # the slope rides as a 5th input
    # The two PRelu(X + R): R became the 1x1 conv's residual.
    assert sum(1 for n, *_ in fused if n.inputs[3]) == 2
    assert "PRelu" not in {plan.kinds.get(n) for n in prelus[:-1]}
    nchw = plan_layout(graph, infer_graph(graph), "nchw", VW)
    assert nchw.fused == 0 and sum(n.op == "PRelu" for n, *_ in nchw.steps) == 4


@pytest.mark.arm
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_network_matches_reference(threads):
    graph = blaze_net(H=96)  # large enough (>= 16384 floats) that the pool, pad and resize run _mt kernels
    feeds = _feeds(graph)
    want = run_reference(graph, feeds)
    sess = Session(graph, threads=threads, options={"layout": "auto"})
    got = sess.run(feeds)
    for name in graph.outputs:
        assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, what=name)
    reasons = [n["reason"] for n in sess.describe()["nodes"] if n["op"] == "Conv"]
    assert sum("PRelu fused" in r for r in reasons) == 3
    # The small blocked passes run on the threads from PARALLEL_MIN_FLOATS outputs.
    small = [n for n in sess.describe()["nodes"] if n["op"] in ("MaxPool", "Pad", "Resize", "Transpose")]
    assert len(small) == 4
    for n in small:
        parallel = threads > 1 and np.prod(n["shape"]) >= PARALLEL_MIN_FLOATS
        assert n["kernel"].endswith("_mt") == parallel, n
    # Channel counts scale with VW: at 2 threads both paths run (pool serial, resize and head over
    # threads; the pad over threads from VW 8).
    assert threads == 1 or 2 <= sum(n["kernel"].endswith("_mt") for n in small) <= 3


@pytest.mark.arm
@settings(max_examples=8, deadline=None)
@given(C1=st.integers(1, 2 * VW + 3), extra=st.integers(0, VW + 1), H=st.integers(1, 6).map(lambda h: 4 * h),
       seed=st.integers(0, 99), threads=st.sampled_from([1, 2]))
def test_fused_network_any_channel_count(C1, extra, H, seed, threads):
    """Pad lanes of the slope vector, a last output block with few real channels, small maps (H = 4h
    keeps the pooled and the strided branch the same size); the arena
    holds large finite garbage first (kernels must write every lane they later read)."""
    graph = blaze_net(C1=C1, C2=C1 + extra, H=H, seed=seed)
    feeds = _feeds(graph, seed)
    sess = Session(graph, threads=threads, options={"layout": "blocked"})
    assert sess.plan.layout.fused == 3
    sess._arena[:] = 0x4B
    got, want = sess.run(feeds), run_reference(graph, feeds)
    for name in graph.outputs:
        assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, what=name)


def test_inspect_reports_the_fused_prelus(tmp_path, monkeypatch):
    from click.testing import CliRunner
    monkeypatch.setenv("EDGERT_LAYOUT", "auto")  # --layout sets it for the CLI's process: undone after the test

    from edgert.cli import main
    from edgert.ir.format import write_ert
    path = tmp_path / "blaze.ert"
    write_ert(blaze_net(), path)
    assert Session(blaze_net()).layout_summary()["fused_prelu"] == 3
    result = CliRunner().invoke(main, ["inspect", str(path), "--layout", "auto"])
    assert result.exit_code == 0, result.output
    assert "3 PRelu folded into the conv before it" in result.output
    assert result.output.count("PRelu fused") == 3  # the three convs' reasons
    nchw = CliRunner().invoke(main, ["inspect", str(path), "--layout", "nchw"])
    assert "folded" not in nchw.output and "PRelu fused" not in nchw.output
