"""Session API: ONNX Runtime-like surface, input validation, output ownership, threads, determinism."""

import threading

import numpy as np
import pytest

import edgert
from edgert.errors import InputError
from edgert.ir.format import write_ert
from tests.test_format import small_graph


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m.ert"
    write_ert(small_graph(), path)
    return path


@pytest.mark.arm
def test_inputs_and_outputs_describe_the_model(model):
    sess = edgert.load(model, threads=1)
    assert [(s.name, s.shape, s.dtype) for s in sess.inputs] == [("x", (2, 3), np.dtype("float32"))]
    assert [(s.name, s.shape) for s in sess.outputs] == [("z", (2, 3))]


@pytest.mark.arm
@pytest.mark.parametrize("feeds, expect", [
    ({}, "missing input(s) ['x']"),
    ({"x": np.ones((2, 3), np.float32), "y": np.ones(1)}, "unknown input(s) ['y']"),
    ({"x": np.ones((2, 3), np.float64)}, "dtype float64"),
    ({"x": np.ones((3, 2), np.float32)}, "shape [3, 2]"),
    ([1, 2], "must be a dict"),
])
def test_bad_feeds_are_clear_errors(model, feeds, expect):
    with pytest.raises(InputError) as info:
        edgert.load(model).run(feeds)
    assert expect in str(info.value)


@pytest.mark.arm
def test_outputs_are_owned_copies_not_arena_views(model):
    sess = edgert.load(model, threads=1)
    first = sess.run({"x": np.ones((2, 3), np.float32)})["z"]
    kept = first.copy()
    sess.run({"x": np.full((2, 3), 5, np.float32)})
    np.testing.assert_array_equal(first, kept)
    assert first.flags.owndata or first.base is None or first.base is not sess._arena


@pytest.mark.arm
def test_same_input_gives_bitwise_identical_output(model):
    sess = edgert.load(model, threads=1)
    x = np.random.default_rng(3).standard_normal((2, 3)).astype(np.float32)
    outs = [sess.run({"x": x})["z"] for _ in range(5)]
    assert all(o.tobytes() == outs[0].tobytes() for o in outs)


def test_sessions_used_from_several_threads_match_serial_runs(model):
    sessions = [edgert.load(model, threads=1) for _ in range(3)]
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(40)]
    serial = [sessions[0].run({"x": x})["z"] for x in xs]
    results = [[None] * len(xs) for _ in sessions]

    def worker(k):
        for i, x in enumerate(xs):
            # Sessions are shared across threads too: run() serialises on the session's lock.
            results[k][i] = sessions[(k + i) % len(sessions)].run({"x": x})["z"]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(3):
        for i in range(len(xs)):
            assert results[k][i].tobytes() == serial[i].tobytes()


def test_threads_must_be_positive(model):
    with pytest.raises(InputError):
        edgert.load(model, threads=-1)
