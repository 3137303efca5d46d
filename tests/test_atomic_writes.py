"""Killing a writer mid-write leaves the old file or the new one, never a torn one."""

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
from converters.builder import GraphBuilder
from edgert.ir.format import write_ert

ROOT = Path(__file__).resolve().parents[1]


def _graph(fill: float, n: int):
    b = GraphBuilder()
    b.add_input("x", (n,))
    b.add_const("w", np.full(n, fill, np.float32))
    b.add_node("Add", ["x", "w"], ["y"])
    b.add_output("y")
    return b.finish()


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from tests.test_atomic_writes import _graph
    from edgert.ir.format import write_ert
    g = _graph(2.0, {n})
    print("ready", flush=True)
    while True:
        write_ert(g, sys.argv[1])
""")


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.3, 0.6])
def test_killed_writer_never_leaves_a_torn_file(tmp_path, delay):
    n = 4_000_000  # 16 MB of weights: each write takes long enough to be interrupted
    path = tmp_path / "m.ert"
    write_ert(_graph(1.0, n), path)
    old = hashlib.sha256(path.read_bytes()).hexdigest()
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(ROOT), n=n), str(path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    new_expected = tmp_path / "expected.ert"
    write_ert(_graph(2.0, n), new_expected)
    assert digest in (old, hashlib.sha256(new_expected.read_bytes()).hexdigest()), "torn file"
    out = edgert.load(path, threads=1).run({"x": np.zeros(n, np.float32)})["y"]
    assert out[0] in (1.0, 2.0) and np.all(out == out[0])


def test_written_files_get_normal_permissions_not_mkstemps_0600(tmp_path):
    import os
    import stat
    from edgert.fileio import atomic_write
    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "new.bin") as fh:
            fh.write(b"x")
        assert stat.S_IMODE(os.stat(tmp_path / "new.bin").st_mode) == 0o644
        os.chmod(tmp_path / "new.bin", 0o640)  # replacing a file keeps its mode
        with atomic_write(tmp_path / "new.bin") as fh:
            fh.write(b"y")
        assert stat.S_IMODE(os.stat(tmp_path / "new.bin").st_mode) == 0o640
    finally:
        os.umask(umask)
