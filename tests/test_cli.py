"""The CLI: one-line errors with distinct exit codes, outputs written atomically."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import edgert
from edgert.cli import main
from edgert.errors import InputError, ModelFormatError
from edgert.ir.format import write_ert
from tests.test_format import small_graph


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m.ert"
    write_ert(small_graph(), path)
    return path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.arm
def test_run_writes_outputs_to_npz(model, tmp_path):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    result = invoke("run", model, "--input", f"x={tmp_path / 'x.npy'}", "--output", out, "--threads", 1)
    assert result.exit_code == 0, result.output
    with np.load(out) as data:
        assert data["z"].shape == (2, 3)


@pytest.mark.arm
def test_inspect_json_reports_kernels_and_memory(model):
    result = invoke("inspect", model, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert [n["op"] for n in info["nodes"]] == ["Mul", "Add"]
    assert all(n["kernel"] and n["reason"] for n in info["nodes"])
    assert info["memory"]["arena_bytes"] >= info["memory"]["lower_bound_bytes"] > 0


@pytest.mark.arm
def test_inspect_text(model):
    result = invoke("inspect", model)
    assert result.exit_code == 0 and "lower bound" in result.output and "f32_binary" in result.output


@pytest.mark.arm
def test_bench_profile_names_every_kernel_node_and_writes_a_trace(model, tmp_path):
    trace = tmp_path / "trace.json"
    result = invoke("bench", model, "--runs", 4, "--warmup", 1, "--json", "--threads", 1, "--profile",
                    "--trace", trace)
    assert result.exit_code == 0, result.output
    prof = json.loads(result.output)
    sess = edgert.load(model, threads=1)
    kernel_nodes = [p.node.name for p in sess.nodes if p.prepared is not None]
    assert [n["name"] for n in prof["nodes"]] == kernel_nodes
    assert all(n["median_ms"] >= 0 for n in prof["nodes"]) and prof["whole_run_median_ms"] > 0
    assert prof["sum_of_node_medians_ms"] <= prof["whole_run_median_ms"] * 1.5
    events = json.loads(trace.read_text())["traceEvents"]
    assert [e["name"] for e in events] == kernel_nodes and all(e["ph"] == "X" for e in events)
    starts = [e["ts"] for e in events]
    assert starts == sorted(starts)
    text = invoke("bench", model, "--runs", 3, "--warmup", 1, "--threads", 1, "--profile", "--top", 2)
    assert text.exit_code == 0 and "executor overhead" in text.output and "slowest 2 nodes" in text.output


def test_bench_json(model):
    result = invoke("bench", model, "--runs", 5, "--warmup", 1, "--json", "--threads", 1)
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["median_ms"] > 0 and info["p90_ms"] >= info["median_ms"] and info["peak_rss_mib"] > 0


@pytest.mark.arm
def test_corrupt_model_is_one_line_and_its_own_exit_code(model, tmp_path):
    model.write_bytes(model.read_bytes()[:100])
    out = tmp_path / "out.npz"
    result = invoke("run", model, "--output", out)
    assert result.exit_code == ModelFormatError.exit_code
    assert "Traceback" not in result.output and str(model) in result.output
    assert not out.exists(), "no output file may be written when the run fails"


@pytest.mark.arm
@pytest.mark.parametrize("args, expect", [
    (["--input", "nope=x.npy"], "no input(s) ['nope']"),
    (["--input", "x"], "write NAME=VALUE"),
    (["--input", "x=missing.npy"], "cannot read input 'x'"),
])
def test_bad_inputs_exit_with_input_error(model, args, expect):
    result = invoke("run", model, *args)
    assert result.exit_code == InputError.exit_code, result.output
    assert expect in result.output


def test_missing_file_is_an_error_not_a_traceback(tmp_path):
    result = invoke("inspect", tmp_path / "nothing.ert")
    assert result.exit_code == ModelFormatError.exit_code and "cannot read" in result.output
