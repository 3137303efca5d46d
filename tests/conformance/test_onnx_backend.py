"""ONNX's own backend tests through the converter and edgert's runtime.

Every test named in ``onnx_nodes.txt`` is converted (dynamic inputs fixed from the test data's
shapes), written to an .ert file, loaded with ``edgert.load`` and run; each output must match the
expected one elementwise within rtol 1e-4 / atol 1e-5 (numpy ``allclose``) unless the allowlist
line states another tolerance and why. ``onnx_nodes_excluded.txt`` gives the reason for every test
of a supported op type that is not run, and a test checks that the two lists cover them all.

Allowlist lines: ``<test name>  [key=value ...]  # note``, with keys
``rtol``/``atol`` (a looser tolerance, with the reason in the note) and ``inputs`` (comma-separated
names that stay runtime inputs; the test's other inputs become constants, as weights are in real
models).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import edgert
from converters.convert import convert
from converters.onnx import OPS
from tests.conformance.onnx_data import all_tests, read_case

HERE = Path(__file__).parent
RTOL, ATOL = 1e-4, 1e-5
# Light models that take more than a few seconds (224x224 inputs through big convolutions; the
# first run also compiles kernels): only in the slow run.
SLOW = {"light/vgg19", "light/densenet121", "light/resnet50", "light/inception_v2", "light/zfnet512",
        "light/bvlc_alexnet", "light/shufflenet"}


def read_list(path: Path) -> dict:
    """{test name: {option: value, 'note': text}} from an allowlist-style file."""
    entries = {}
    for raw in path.read_text().splitlines():
        line, _, note = raw.partition("#")
        fields = line.split()
        if not fields:
            continue
        options = dict(f.split("=", 1) for f in fields[1:])
        options["note"] = note.strip()
        if fields[0] in entries:
            raise ValueError(f"{path.name}: {fields[0]} is listed twice")
        entries[fields[0]] = options
    return entries


ALLOWED = read_list(HERE / "onnx_nodes.txt")
EXCLUDED = read_list(HERE / "onnx_nodes_excluded.txt")


def bake_constants(model, feeds, runtime):
    """Turn every input not named in ``runtime`` into an initializer holding its test value."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    values = dict(feeds)
    keep = [vi for vi in model.graph.input if vi.name in runtime or vi.name not in values]
    for vi in model.graph.input:
        if vi.name not in runtime and vi.name in values:
            model.graph.initializer.append(numpy_helper.from_array(values[vi.name], vi.name))
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return model, [(n, v) for n, v in feeds if n in runtime]


def run_case(name, workdir: Path, options=None):
    """Convert and run one test; returns [(output name, got, expected)]."""
    options = options or {}
    model, feeds, expected = read_case(name)
    if "inputs" in options:
        model, feeds = bake_constants(model, feeds, set(options["inputs"].split(",")))
    src, dst = workdir / "model.onnx", workdir / "model.ert"
    onnx.save(model, str(src))
    convert(src, dst, input_shapes={n: v.shape for n, v in feeds})
    sess = edgert.load(dst, threads=1)
    got = sess.run(dict(feeds))
    names = [o.name for o in model.graph.output]
    return [(n, got[n], want) for n, want in zip(names, expected)]


def assert_matches(results, rtol=RTOL, atol=ATOL):
    for name, got, want in results:
        assert got.shape == want.shape, f"output '{name}': shape {got.shape}, expected {want.shape}"
        assert got.dtype == want.dtype, f"output '{name}': dtype {got.dtype}, expected {want.dtype}"
        if want.dtype.kind in "fc":
            bad = ~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
            if bad.any():
                err = np.abs(got.astype(np.float64) - want.astype(np.float64))
                k = int(np.argmax(np.where(bad, err, -1)))
                pytest.fail(f"output '{name}': {int(bad.sum())} of {want.size} values off; worst at flat index {k}: "
                            f"got {got.reshape(-1)[k]!r}, expected {want.reshape(-1)[k]!r} (rtol {rtol}, atol {atol})")
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"output '{name}'")


def _params():
    for name, options in ALLOWED.items():
        marks = [pytest.mark.conformance] + ([pytest.mark.slow] if name in SLOW else [])
        yield pytest.param(name, options, id=name, marks=marks)


@pytest.mark.parametrize(("name", "options"), list(_params()))
def test_onnx_backend(name, options, tmp_path):
    results = run_case(name, tmp_path, options)
    assert_matches(results, float(options.get("rtol", RTOL)), float(options.get("atol", ATOL)))


@pytest.mark.conformance
def test_every_test_of_a_supported_op_is_run_or_excluded_with_a_reason():
    """No backend test of an op the converter handles is silently skipped."""
    tests = all_tests()
    relevant = {name for name, ops in tests.items() if any(op in OPS for op in ops)}
    unaccounted = sorted(relevant - set(ALLOWED) - set(EXCLUDED))
    assert not unaccounted, (f"{len(unaccounted)} test(s) of supported ops are neither allowlisted nor excluded: "
                             + ", ".join(unaccounted[:40]))
    assert all(EXCLUDED[name]["note"] for name in EXCLUDED), "every exclusion needs a reason after '#'"
    both = sorted(set(ALLOWED) & set(EXCLUDED))
    assert not both, f"listed as both run and excluded: {both}"
    missing = sorted((set(ALLOWED) | set(EXCLUDED)) - set(tests))
    assert not missing, f"listed tests that this onnx version does not have: {missing[:20]}"
