"""CLI for codebook/KV layers: ``run --codebook ... --emit-codes`` and ``kv-update``, checked against the API."""

import numpy as np
import pytest
from click.testing import CliRunner

import edgert
from edgert.cli import main
from edgert.cli_codebook import parse_codebook_options
from edgert.errors import InputError
from edgert.ir.format import write_ert
from edgert.kv_update import value_rows
from tests.helpers import single_op_graph
from tests.test_kv_update import kv_graph

G, K, DG, k = 2, 16, 4, 3


@pytest.fixture(scope="module")
def snap_model(tmp_path_factory):
    rng = np.random.default_rng(1)
    C = rng.standard_normal((G, K, DG)).astype(np.float32)
    x = rng.standard_normal((5, G * DG)).astype(np.float32)
    graph = single_op_graph("CodebookSnap", [("x", x), ("cb", C), ("gamma", np.ones((G, DG), np.float32)),
                                             ("beta", np.zeros((G, DG), np.float32))],
                            {"k": k}, consts={"cb", "gamma", "beta"}, n_outputs=2)
    path = tmp_path_factory.mktemp("cb") / "snap.ert"
    write_ert(graph, path)
    np.save(path.with_name("x.npy"), x)
    return path, path.with_name("x.npy")


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def test_parse_accumulates_per_layer_and_rejects_bad_actions():
    plans = parse_codebook_options(["snap:force=3,4", "snap:disable=7", "0:block=1", "snap:group=1", "snap:bypass"])
    assert plans["snap"]["force"] == [3, 4] and plans["snap"]["disable"] == [7] and plans["snap"]["group"] == 1
    assert plans["snap"]["bypass"] and plans[0]["block"] == [1]
    for bad in ["snap", "snap:frobnicate=1", "snap:force=", "snap:force=a", "snap:bypass=1", ":force=1", "x:keep-k=maybe"]:
        with pytest.raises(InputError):
            parse_codebook_options([bad])


def test_run_with_interventions_matches_the_api(snap_model, tmp_path):
    path, x_path = snap_model
    out = tmp_path / "out.npz"
    result = invoke("run", path, "--input", f"x={x_path}", "--threads", 1, "--output", out, "--emit-codes",
                    "--codebook", "the_codebooksnap:force=5,9", "--codebook", "the_codebooksnap:disable=2")
    assert result.exit_code == 0, result.output
    assert "codes the_codebooksnap" in result.output and "row 0:" in result.output
    sess = edgert.load(path, threads=1)
    sess.set_codebook_intervention("the_codebooksnap", force=[(None, 0, 5), (None, 1, 9)], disable=[(None, 2)])
    want = sess.run({"x": np.load(x_path)})
    with np.load(out) as got:
        np.testing.assert_array_equal(got["out0"], want["out0"])
        ids = got["codes/the_codebooksnap"]
    np.testing.assert_array_equal(ids, sess.codes("the_codebooksnap"))
    assert (ids[..., 0] == 5).all() and (ids[..., 1] == 9).all() and not (ids == 2).any()
    # and the intervention changed something compared with a plain run
    plain = edgert.load(path, threads=1).run({"x": np.load(x_path)})
    assert not np.array_equal(plain["out0"], want["out0"])


def test_run_errors_are_one_line(snap_model):
    path, x_path = snap_model
    result = invoke("run", path, "--input", f"x={x_path}", "--codebook", "nosuch:force=1")
    assert result.exit_code == InputError.exit_code and "no CodebookSnap layer named 'nosuch'" in result.output
    result = invoke("run", path, "--input", f"x={x_path}", "--codebook", f"0:force={K}")
    assert result.exit_code == InputError.exit_code and "code" in result.output


def test_kv_update_command_replaces_rows_atomically(tmp_path):
    path = tmp_path / "kv.ert"
    write_ert(kv_graph(), path)
    rows = np.array([[0, 3], [2, 31]])
    values = np.arange(10, dtype=np.float32).reshape(2, 5)
    np.savez(tmp_path / "upd.npz", indices=rows, values=values)
    result = invoke("kv-update", path, "--layer", "kv", "--from", tmp_path / "upd.npz")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(value_rows(path, "kv", rows), values)
    # a bad update names the problem and leaves the file as it was
    before = path.read_bytes()
    np.savez(tmp_path / "bad.npz", indices=np.array([[9, 0]]), values=values[:1])
    result = invoke("kv-update", path, "--layer", "0", "--from", tmp_path / "bad.npz")
    assert result.exit_code == InputError.exit_code and "out of range" in result.output
    np.savez(tmp_path / "nokeys.npz", rows=rows)
    result = invoke("kv-update", path, "--layer", "kv", "--from", tmp_path / "nokeys.npz")
    assert result.exit_code == InputError.exit_code and "lacks" in result.output
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
