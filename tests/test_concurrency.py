"""Multi-threaded kernels under concurrent use: several Python threads driving 2-thread sessions.

The small-graph tests in test_session.py cover the session lock; this one runs a real convnet whose
convolutions take the parallel (``_mt``) kernels, so OpenMP regions are launched from several
Python threads at once. Results must equal serial runs bit for bit, and repeat bit for bit.
"""

import threading

import numpy as np
import pytest

import edgert
from converters.convert import convert
from converters.zoo.mobilenet import mobilenet_v2


@pytest.fixture(scope="module")
def convnet(tmp_path_factory):
    import onnx
    d = tmp_path_factory.mktemp("mt")
    onnx.save(mobilenet_v2(size=96, width=0.5, num_classes=10), d / "m.onnx")
    convert(d / "m.onnx", d / "m.ert")
    return d / "m.ert"


@pytest.mark.arm
def test_parallel_kernels_are_chosen(convnet):
    kernels = {p.prepared.kernel for p in edgert.load(convnet, threads=2).nodes if p.prepared}
    assert any(k.endswith("_mt") for k in kernels), kernels


@pytest.mark.arm
def test_two_thread_sessions_from_several_python_threads_match_serial_runs(convnet):
    sessions = [edgert.load(convnet, threads=2) for _ in range(2)]
    spec = sessions[0].inputs[0]
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal(spec.shape).astype(np.float32) for _ in range(6)]
    serial = [sessions[0].run({spec.name: x}) for x in xs]
    results = {}

    def worker(k):
        for i, x in enumerate(xs):
            results[k, i] = sessions[(k + i) % 2].run({spec.name: x})

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 * len(xs)
    for (k, i), out in results.items():
        for name, value in out.items():
            assert value.tobytes() == serial[i][name].tobytes(), (k, i, name)


@pytest.mark.arm
def test_repeated_runs_are_bitwise_identical_at_two_threads(convnet):
    sess = edgert.load(convnet, threads=2)
    spec = sess.inputs[0]
    x = np.random.default_rng(2).standard_normal(spec.shape).astype(np.float32)
    first = sess.run({spec.name: x})
    for _ in range(3):
        again = sess.run({spec.name: x})
        assert all(again[n].tobytes() == first[n].tobytes() for n in first)
