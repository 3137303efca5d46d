"""Threads and memory budgets from board profiles; explicit settings override the profile."""

import numpy as np
import pytest
from click.testing import CliRunner

import edgert
from edgert.cli import main
from edgert.errors import BoardError, BudgetError, InputError
from edgert.ir.format import write_ert
from edgert.runtime.resources import available_cpus
from tests.test_format import small_graph


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m.ert"
    write_ert(small_graph(), path)
    return path


@pytest.mark.arm
def test_board_sets_threads_capped_to_available_cpus(model):
    sess = edgert.load(model, board="rpi-4-4gb")
    assert sess.threads == min(4, len(available_cpus()))
    assert sess.describe()["board"] == "rpi-4-4gb"


@pytest.mark.arm
def test_explicit_threads_override_the_board(model):
    assert edgert.load(model, board="rpi-4-4gb", threads=1).threads == 1


@pytest.mark.arm
def test_board_budget_is_checked(model):
    fit = edgert.load(model, board="rpi-zero-2w").describe()["budget"]
    assert fit["fits"] and fit["budget_bytes"] == 300 * 2**20 and fit["need_bytes"] > 0


@pytest.mark.arm
def test_over_budget_is_a_clear_error_with_numbers(model):
    with pytest.raises(BudgetError) as info:
        edgert.load(model, memory_budget="64B")
    text = str(info.value)
    assert "needs 100B" in text and "budget is 64B" in text and "--fp16" in text


@pytest.mark.arm
@pytest.mark.parametrize("kw, error", [({"board": "no-such-board"}, BoardError),
                                       ({"memory_budget": "lots"}, InputError),
                                       ({"threads": 0}, InputError)])
def test_bad_settings(model, kw, error):
    with pytest.raises(error):
        edgert.load(model, **kw)


@pytest.mark.arm
def test_cli_budget_error_exit_code(model):
    result = CliRunner().invoke(main, ["run", str(model), "--memory-budget", "10B"])
    assert result.exit_code == BudgetError.exit_code and "memory budget is 10B" in result.output


@pytest.mark.arm
def test_cli_boards_lists_and_detects():
    result = CliRunner().invoke(main, ["boards"])
    assert result.exit_code == 0 and "rpi-4-1gb" in result.output and "x86-64-host" in result.output
    result = CliRunner().invoke(main, ["boards", "--detect", "--json"])
    assert result.exit_code == 0 and '"userland_bits"' in result.output


def test_warm_compiles_and_reports_cache(model):
    result = CliRunner().invoke(main, ["warm", str(model), "--threads", "1", "--no-aot"])
    assert result.exit_code == 0 and "2 steps compiled" in result.output


@pytest.mark.arm
def test_huge_declared_activation_is_a_budget_error_not_an_oom(tmp_path):
    from converters.builder import GraphBuilder
    b = GraphBuilder()
    b.add_input("x", (2**15, 2**16))  # 8 GiB each, the largest tensor the file format accepts
    b.add_node("Relu", ["x"], ["y"])
    b.add_node("Sigmoid", ["x"], ["z"])
    b.add_node("Tanh", ["x"], ["w"])  # x, y, z and w live together: 32 GiB
    b.add_node("Add", ["y", "z"], ["a"])
    b.add_node("Add", ["a", "w"], ["o"])
    b.add_output("o")
    path = tmp_path / "huge.ert"
    write_ert(b.finish(), path)
    with pytest.raises(BudgetError) as info:
        edgert.load(path)
    assert "of RAM" in str(info.value)


@pytest.mark.parametrize("user_env, expect", [({}, ("PASSIVE", "10000")),
                                              ({"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "7"}, ("ACTIVE", "7"))])
def test_openmp_wait_defaults_are_set_before_libgomp_loads_and_user_values_win(user_env, expect):
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NUMBA_THREADING_LAYER")}
    env.update(user_env)
    code = "import os, edgert.kernels._jit as j; print(os.environ['OMP_WAIT_POLICY'], os.environ['GOMP_SPINCOUNT'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert tuple(out.stdout.split()) == expect


def test_blas_fallbacks_are_held_to_the_session_threads():
    """A MatMul of two computed operands runs through numpy (BLAS): during runs BLAS gets the
    session's thread count, not one thread per CPU."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from converters.builder import GraphBuilder
    b = GraphBuilder()
    b.add_input("a", (2, 1, 3, 64, 64))  # batch dims that do not flatten into two levels: numpy
    b.add_input("c", (1, 4, 1, 64, 64))
    b.add_node("MatMul", ["a", "c"], ["y"], name="mm")
    b.add_output("y")
    from edgert.runtime.session import Session
    sess = Session(b.finish(), threads=1)
    kernels = {p.prepared.kernel for p in sess.nodes if p.prepared}
    if "np_matmul" not in kernels:
        pytest.skip(f"MatMul took {kernels}, not the numpy fallback")
    assert "held to 1 thread" in sess.describe()["blas"]
    seen = []
    real = sess.steps[0][0]

    def spy(*args):
        seen.append([i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"])
        return real(*args)

    sess.steps[0] = (spy, sess.steps[0][1])
    rng = np.random.default_rng(0)
    a, c = rng.standard_normal((2, 1, 3, 64, 64), np.float32), rng.standard_normal((1, 4, 1, 64, 64), np.float32)
    out = sess.run({"a": a, "c": c})["y"]
    np.testing.assert_allclose(out, a @ c, rtol=1e-5, atol=1e-4)
    assert seen and seen[0] and all(n == 1 for n in seen[0])  # numpy's BLAS is loaded and held to 1
