"""On-device value updates: rows replaced exactly, nothing else touched, atomic under a kill."""

import hashlib
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import edgert
import edgert.ops.codebook
from converters.builder import GraphBuilder
from edgert import interventions as iv
from edgert.errors import InputError
from edgert.ir.format import read_ert, write_ert
from edgert.kv_update import gradient_rows, update_values, value_rows

ROOT = Path(__file__).resolve().parents[1]


def kv_graph(C=4, M=32, dk=3, dv=5, fp16=False, seed=0):
    rng = np.random.default_rng(seed)
    b = GraphBuilder(metadata={"name": "kv-test"})
    b.add_input("z", (6, C * dk))
    b.add_const("keys", rng.standard_normal((C, M, dk)).astype(np.float32))
    b.add_const("values", rng.standard_normal((C, M, dv)).astype(np.float32), dtype="f16" if fp16 else None)
    b.add_node("KeyValueLookup", ["z", "keys", "values"], ["logits"], {"split": "chunk", "combine": "vote"}, name="kv")
    b.add_output("logits")
    return b.finish()


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_rows_are_replaced_and_everything_else_is_unchanged(tmp_path):
    path = tmp_path / "m.ert"
    write_ert(kv_graph(), path)
    before = read_ert(path)
    old_values = np.array(before.consts["values"])
    new = {(1, 7): np.arange(5.0), 70: -np.ones(5)}  # 70 = head 2, key 6
    assert update_values(path, "kv", new) == path
    after = read_ert(path)
    want = old_values.copy()
    want[1, 7] = np.arange(5.0)
    want[2, 6] = -1.0
    np.testing.assert_array_equal(after.consts["values"], want)
    np.testing.assert_array_equal(after.consts["keys"], before.consts["keys"])
    assert after.metadata == before.metadata and [n.attrs for n in after.nodes] == [n.attrs for n in before.nodes]
    np.testing.assert_array_equal(value_rows(path, 0, [(1, 7), (2, 6)]), want[[1, 2], [7, 6]])
    np.testing.assert_array_equal(value_rows(path, 0, [39, 70]), want.reshape(-1, 5)[[39, 70]])


def test_array_form_writes_a_new_file_and_the_model_uses_it(tmp_path):
    src, dst = tmp_path / "m.ert", tmp_path / "adapted.ert"
    write_ert(kv_graph(), src)
    old = digest(src)
    z = np.random.default_rng(1).standard_normal((6, 12)).astype(np.float32)
    sess = edgert.load(src, threads=1)
    _, codes = iv.run_with_codes(sess, {"z": z})
    ids = codes["kv"]  # [6, C, 1]
    rows = np.unique(np.stack([np.broadcast_to(np.arange(4), ids.shape[:2]).reshape(-1), ids[..., 0].reshape(-1)], -1), axis=0)
    update_values(src, "kv", (rows, np.zeros((len(rows), 5))), out=dst)
    assert digest(src) == old
    out = edgert.load(dst, threads=1).run({"z": z})["logits"]
    np.testing.assert_array_equal(out, np.zeros_like(out))  # every selected row is now zero


def test_fp16_tables_stay_fp16_and_reject_overflow(tmp_path):
    path = tmp_path / "m.ert"
    write_ert(kv_graph(fp16=True), path)
    update_values(path, 0, {0: np.full(5, 1 / 3)})
    table = read_ert(path).consts["values"]
    assert table.dtype == np.float16 and table[0, 0, 0] == np.float16(1 / 3)
    with pytest.raises(InputError, match="fp16"):
        update_values(path, 0, {0: np.full(5, 1e6)})


@pytest.mark.parametrize("layer,rows,message", [
    ("nope", {0: np.zeros(5)}, "no KeyValueLookup layer named 'nope'"),
    (1, {0: np.zeros(5)}, "out of range"),
    ("kv", {128: np.zeros(5)}, r"flat row index 128 is out of range \[0, 128\)"),
    ("kv", {(4, 0): np.zeros(5)}, r"\(head, key\) out of range"),
    ("kv", {(0, -1): np.zeros(5)}, r"\(head, key\) out of range"),
    ("kv", {0: np.zeros(4)}, r"values must be \[1, 5\]"),
    ("kv", {0: np.full(5, np.nan)}, "finite"),
    ("kv", ([3, 3], np.zeros((2, 5))), "given twice"),
    ("kv", ([[0, 1, 2]], np.zeros((1, 5))), "indices must be"),
    ("kv", "rows", "dict"),
])
def test_bad_updates_are_input_errors_and_leave_the_file_alone(tmp_path, layer, rows, message):
    path = tmp_path / "m.ert"
    write_ert(kv_graph(), path)
    old = digest(path)
    with pytest.raises(InputError, match=message):
        update_values(path, layer, rows)
    assert digest(path) == old and list(tmp_path.iterdir()) == [path]


def test_gradient_rows_match_a_dense_gradient():
    rng = np.random.default_rng(3)
    n, C, M, dv, topk = 5, 3, 7, 4, 2
    V = rng.standard_normal((C, M, dv))
    ids = np.stack([np.stack([rng.choice(M, topk, replace=False) for _ in range(C)]) for _ in range(n)])
    labels = rng.integers(0, dv, n)
    logits = V[np.arange(C)[None, :, None], ids].sum(2).mean(1)
    pairs, grads = gradient_rows(ids, logits, labels)
    dense = np.zeros_like(V)
    eps = 1e-6
    def loss(V):
        z = V[np.arange(C)[None, :, None], ids].sum(2).mean(1)
        z = z - z.max(-1, keepdims=True)
        return -(z[np.arange(n), labels] - np.log(np.exp(z).sum(-1))).sum()
    for c in range(C):
        for j in range(M):
            for v in range(dv):
                W = V.copy()
                W[c, j, v] += eps
                dense[c, j, v] = (loss(W) - loss(V)) / eps
    got = np.zeros_like(V)
    got[pairs[:, 0], pairs[:, 1]] = grads
    np.testing.assert_allclose(got, dense, atol=1e-4)


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import numpy as np
    from edgert.kv_update import update_values
    idx = np.arange(0, {rows}, 7)
    print("ready", flush=True)
    for k in range(10**6):  # alternate two versions, so a torn write could mix them
        update_values(sys.argv[1], "kv", (idx, np.full((len(idx), {dv}), 2.0 + k % 2)), out=sys.argv[2])
""")


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.6])
def test_a_writer_killed_mid_update_leaves_the_old_or_a_new_model(tmp_path, delay):
    C, M, dk, dv = 16, 16384, 4, 16  # 16 MB of values: each rewrite takes long enough to interrupt
    src, target = tmp_path / "src.ert", tmp_path / "target.ert"
    write_ert(kv_graph(C=C, M=M, dk=dk, dv=dv, seed=2), src)
    write_ert(read_ert(src), target)
    versions = {digest(target): "old"}
    idx = np.arange(0, C * M, 7)
    for value in (2.0, 3.0):
        update_values(src, "kv", (idx, np.full((len(idx), dv), value)), out=tmp_path / "expected.ert")
        versions[digest(tmp_path / "expected.ert")] = value
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(ROOT), rows=C * M, dv=dv), str(src),
                             str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert digest(target) in versions, "torn file"
    z = np.zeros((6, C * dk), np.float32)
    edgert.load(target, threads=1).run({"z": z})  # loads (checksums verified) and runs
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".target.ert.")]
    assert len(leftovers) <= 1  # at most the killed writer's temporary file
