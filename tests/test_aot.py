"""The ahead-of-time kernel library: argument types keyed exactly as numba types them, a built library
serving a model without numba in a fresh process, stale or partial libraries falling back to the JIT."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from onnx import helper

from converters.convert import convert_graph
from edgert import aot, aot_build
from edgert.cli import main
from edgert.ir.format import write_ert
from edgert.kernels import _jit
from edgert.runtime.session import Session
from tests.onnx_helpers import make_model

numba = pytest.importorskip("numba")

# All of it runs on the emulated ARM boards too (.ci/run sets ARM64_AOT=1 so the library can be built
# there; without a working compiler the build tests skip).
pytestmark = pytest.mark.arm

DTYPES = ["float32", "float64", "int32", "int64", "uint8", "int8", "bool"]


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=4)))
    a = np.zeros(shape, dtype)
    view = draw(st.sampled_from(["plain", "transpose", "step", "fortran"]))
    if view == "transpose":
        a = a.T
    elif view == "step" and a.ndim:
        a = np.zeros(shape[:-1] + (shape[-1] * 2,), dtype)[..., ::2]
    elif view == "fortran":
        a = np.asfortranarray(a)
    if draw(st.booleans()):
        a.setflags(write=False)
    return a


scalars = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False),
                    st.sampled_from([np.float32(1), np.int32(2), np.int64(3), np.float64(4), np.uint8(5), np.bool_(True)]))
values = st.recursive(st.one_of(arrays(), scalars, st.none()), lambda inner: st.tuples(inner, inner), max_leaves=4)


@given(values)
def test_value_key_names_exactly_the_numba_type(value):
    # The library's entry points trust their argument types, so a key must never match a value that
    # numba would type differently from what the entry was compiled for.
    assert aot_build._numba_type(aot.value_key(value)) == numba.typeof(value)


@given(values, values)
def test_equal_keys_iff_equal_numba_types(a, b):
    assert (aot.value_key(a) == aot.value_key(b)) == (numba.typeof(a) == numba.typeof(b))


def test_unmodelled_values_are_refused():
    for value in (np.zeros(3, np.complex64), [1, 2], "x", np.ma.zeros(3), 2**64,
                  np.zeros(5, np.uint8)[1:].view(np.float32)):  # the last one is unaligned
        with pytest.raises(aot.Unsupported):
            aot.value_key(value)


def _small_convnet():
    rng = np.random.default_rng(3)
    w = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.3
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Conv", ["c2", "w3", "b3"], ["c3"]),
        helper.make_node("Add", ["c3", "r1"], ["a"]),
        helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    inits = {"w1": w(8, 3, 3, 3), "b1": w(8), "w2": w(8, 1, 3, 3), "w3": w(8, 8, 1, 1), "b3": w(8),
             "wf": w(5, 8), "bf": w(5)}
    return make_model(nodes, [("x", np.float32, [1, 3, 16, 16])], ["y"], inits)


def _residual_block():
    """A 1x1 conv whose residual Add is fused into it; on a 7x7 plane that can be a Sequence step
    (transposed GEMM, then the add+activation pass), which must still start without numba."""
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"]), helper.make_node("Add", ["c", "x"], ["y"])]
    inits = {"w": rng.standard_normal((32, 32, 1, 1)).astype(np.float32) * 0.2,
             "b": rng.standard_normal(32).astype(np.float32)}
    return make_model(nodes, [("x", np.float32, [1, 32, 7, 7])], ["y"], inits)


@pytest.fixture(scope="module")
def aot_home(tmp_path_factory):
    """A cache root with a library built by ``edgert warm`` for a small convnet (numba's own cache is
    shared with this process, so only the extension module is compiled)."""
    if aot_build.toolchain_problem():
        pytest.skip(aot_build.toolchain_problem())
    root = tmp_path_factory.mktemp("aot-home")
    env = dict(os.environ, EDGERT_CACHE_DIR=str(root), NUMBA_CACHE_DIR=_jit.cache_dir(), EDGERT_AOT="1")
    for name, model in (("net", _small_convnet()), ("res", _residual_block())):  # the second build merges
        graph, _ = convert_graph(model)
        write_ert(graph, root / f"{name}.ert")
        result = subprocess.run([sys.executable, "-m", "edgert", "warm", str(root / f"{name}.ert"), "--threads", "1"],
                                env=env, capture_output=True, text=True, check=False, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        # The second model may need no new signature (e.g. on ARM, where its conv takes a kernel the
        # first one compiled): then the library is reused as it is.
        assert ("AOT library built" in result.stdout or name == "res" and "AOT library already had" in result.stdout) \
            and "max relative difference 0.0e+00" in result.stdout, result.stdout
    return root, env


_CHILD = """
import json, sys, numpy as np
import edgert
sess = edgert.load(sys.argv[1], threads=1)
x = np.random.default_rng(7).standard_normal(sess.inputs[0].shape).astype(np.float32)
out = sess.run({sess.inputs[0].name: x})
print(json.dumps({"numba": "numba" in sys.modules, "llvmlite": "llvmlite" in sys.modules,
                  "compiled": sess.describe()["compiled"], "out": {k: v.ravel().tolist() for k, v in out.items()}}))
"""


def _child(env, model):
    result = subprocess.run([sys.executable, "-c", _CHILD, str(model)], env=env, capture_output=True, text=True,
                            check=False, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _jit_outputs(path):
    from edgert.ir.format import read_ert
    sess = Session(read_ert(path), threads=1)
    x = np.random.default_rng(7).standard_normal(sess.inputs[0].shape).astype(np.float32)
    return sess.run({sess.inputs[0].name: x})


def test_built_library_runs_the_model_without_numba_and_matches_the_jit(aot_home):
    root, env = aot_home
    got = _child(env, root / "net.ert")
    assert got["compiled"]["jit"] == 0 and got["compiled"]["aot"] >= 5
    assert not got["numba"] and not got["llvmlite"], "an AOT start must not load numba or LLVM"
    want = _jit_outputs(root / "net.ert")
    np.testing.assert_array_equal(np.asarray(got["out"]["y"], np.float32), want["y"].ravel())


def test_a_merged_library_serves_both_models_including_sequence_steps(aot_home):
    root, env = aot_home
    for name in ("net", "res"):
        got = _child(env, root / f"{name}.ert")
        assert got["compiled"]["jit"] == 0 and not got["numba"], (name, got["compiled"])
        want = _jit_outputs(root / f"{name}.ert")
        np.testing.assert_array_equal(np.asarray(got["out"]["y"], np.float32), want["y"].ravel())


def test_kernels_missing_from_the_library_fall_back_to_the_jit(aot_home, tmp_path):
    _, env = aot_home
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Softmax", ["c"], ["y"], axis=1)]  # Softmax: not in the library
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph, _ = convert_graph(make_model(nodes, [("x", np.float32, [1, 3, 8, 8])], ["y"], {"w": w}))
    write_ert(graph, tmp_path / "other.ert")
    got = _child(env, tmp_path / "other.ert")
    assert got["compiled"]["jit"] >= 1 and got["numba"]
    want = _jit_outputs(tmp_path / "other.ert")
    np.testing.assert_allclose(np.asarray(got["out"]["y"], np.float32), want["y"].ravel(), rtol=1e-6, atol=1e-7)


@pytest.fixture
def library_here(aot_home, monkeypatch):
    """This process reads the test library (and forgets it afterwards)."""
    monkeypatch.setenv("EDGERT_CACHE_DIR", str(aot_home[0]))
    monkeypatch.setenv("EDGERT_AOT", "1")
    aot.forget()
    yield
    aot.forget()


def test_a_library_for_other_kernel_sources_is_ignored(library_here, monkeypatch):
    assert aot.host_library_target() is not None
    monkeypatch.setattr(aot, "sources_digest", lambda: "edited")
    aot.forget()
    assert aot.host_library_target() is None


def _sample(key):
    """A value whose numba type has this argument key (None when the key needs a non-C layout)."""
    if key[0] == "a":
        _, dtype, ndim, layout, readonly = key
        if layout != "C":
            return None
        a = np.zeros((1,) * ndim, dtype)
        a.setflags(write=not readonly)
        return a
    if key[0] == "s":
        return {"int64": 1, "float64": 0.5, "bool": True}.get(key[1], np.dtype(key[1]).type(1))
    return None


def test_lookup_never_serves_other_argument_types(library_here):
    manifest = aot.read_manifest(aot.library_dir())
    for entry in manifest["entries"]:
        args = tuple(_sample(k) for k in json.loads(entry["key"]))
        if all(a is not None for a in args) and any(isinstance(a, np.ndarray) for a in args):
            break
    else:
        pytest.fail("no library entry with C-contiguous arrays to probe")
    module, _, name = entry["kernel"].partition(":")
    kernel = getattr(__import__(module, fromlist=[name]), name)
    assert aot.lookup(kernel, args) is not None
    i = next(i for i, a in enumerate(args) if isinstance(a, np.ndarray))
    changed = args[i].astype(np.float64 if args[i].dtype != np.float64 else np.float32)
    changed.setflags(write=args[i].flags.writeable)  # only the dtype differs
    assert aot.lookup(kernel, args[:i] + (changed,) + args[i + 1:]) is None  # never another type's entry
    assert aot.lookup(np.copyto, args) is None  # not a kernel


def test_a_damaged_library_warns_and_the_model_runs_on_the_jit(aot_home, tmp_path):
    root, env = aot_home
    damaged = tmp_path / "home"
    shutil.copytree(root / "aot", damaged / "aot")
    so = next((damaged / "aot").rglob("*.so"))
    so.write_bytes(so.read_bytes()[:4096])  # truncated, as by a full disk or an interrupted copy
    got = _child(dict(env, EDGERT_CACHE_DIR=str(damaged)), root / "net.ert")
    assert got["compiled"]["aot"] == 0 and got["numba"]
    want = _jit_outputs(root / "net.ert")
    np.testing.assert_array_equal(np.asarray(got["out"]["y"], np.float32), want["y"].ravel())


def test_warm_without_a_compiler_says_why_and_keeps_the_jit_cache(tmp_path, monkeypatch):
    graph, _ = convert_graph(_small_convnet())
    write_ert(graph, tmp_path / "net.ert")
    monkeypatch.setenv("CC", "no-such-compiler-xyz")
    monkeypatch.setenv("EDGERT_CACHE_DIR", str(tmp_path))
    result = CliRunner().invoke(main, ["warm", str(tmp_path / "net.ert"), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "AOT library not built: no working C and C++ compiler" in result.output and "numba's cache is warm" in result.output
    assert not (tmp_path / "aot").exists() or not any((tmp_path / "aot").rglob("*.so"))


_PATCH_CHILD = """
import json, sys
import edgert, edgert.ops  # every op module, so every kernel module is imported (deferred)
from edgert.kernels import _jit
deferred = len(_jit._lazy)
_jit.enable_jit()
left = []
for name, module in list(sys.modules.items()):
    if name.startswith("edgert.kernels.") and module is not None:
        for key, value in vars(module).items():
            if isinstance(value, (_jit.LazyKernel, _jit._SimdPlaceholder)) or (key == "prange" and value is range):
                left.append(f"{name}.{key}")
print(json.dumps({"deferred": deferred, "left": left, "simd_real": not getattr(sys.modules["edgert.kernels.simd"], "_STAND_IN", False)}))
"""


def test_enabling_the_jit_replaces_every_deferred_name_in_the_kernel_modules(aot_home):
    # A kernel compiled after a deferred start must see real dispatchers, intrinsics and prange in
    # its module's globals, or numba would fail to type it (or silently run a prange serially).
    _, env = aot_home
    result = subprocess.run([sys.executable, "-c", _PATCH_CHILD], env=env, capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["deferred"] > 50 and got["left"] == [] and got["simd_real"]
