"""Run .ert models with every SparseConv1x1 forced onto the CSR kernel and forced dense; print the
largest relative difference of their outputs. Board-side only (numpy + edgert), so it runs under
the ARM emulator as it is:

    tools/arm64-emulation.sh python tools/sparse_vs_dense.py face.ert mnv2_p90.ert
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def compare(path, threads=1) -> tuple:
    import edgert
    outs, layers = {}, 0
    for mode in ("always", "never"):
        sess = edgert.load(path, threads=threads, options={"sparse": mode})
        rng = np.random.default_rng(0)
        feeds = {i.name: rng.uniform(-1, 1, i.shape).astype(np.float32) for i in sess.inputs}
        outs[mode] = sess.run(feeds)
        layers = sum(n["op"] == "SparseConv1x1" for n in sess.describe()["nodes"])
    rel = max(float(np.max(np.abs(outs["always"][k] - outs["never"][k])) / max(1e-30, float(np.max(np.abs(v)))))
              for k, v in outs["never"].items())
    return layers, rel


def main(argv=None) -> int:
    paths = argv if argv is not None else sys.argv[1:]
    print(f"machine {platform.machine()}")
    worst = 0.0
    for path in paths:
        layers, rel = compare(path)
        worst = max(worst, rel)
        print(f"{path}: {layers} sparse layers, max relative difference sparse vs dense {rel:.2e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
