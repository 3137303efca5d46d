"""Long fuzzing run over the converters: mutate valid ONNX and TFLite files, convert, load and run.

    python tools/fuzz_sources.py --iterations 4000 --seed 3 [--markdown /tmp/fuzz-sources.md]

Seeds: the built-in tiny ONNX convnet (converters/zoo/tiny.py) and, when the MediaPipe wheel is in
the model cache (tools/fetch_models.py), face_detection_short_range.tflite and
selfie_segmentation.tflite (a custom op). Mutations: byte flips, runs of extreme bytes,
truncation, and for ONNX structured edits of the protobuf (cycles, dangling inputs, huge or
negative dims, lying initializers, wrong dtypes, bad attributes) that a byte flip rarely makes.

Each batch runs in a child process, so a hard crash (segfault, abort) is counted, not lost.
Outcomes: converted-loaded-ran ("ok"), each edgert error class, and anything else (a bug: its
exception and the mutation that caused it are listed). A converted file must load and run.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import collections, json, os, sys, traceback
import numpy as np
sys.path.insert(0, sys.argv[1])
from tools.fuzz_sources import mutate, seed_files
import edgert
from converters.convert import convert
from edgert.errors import EdgertError
seeds = seed_files()
rng = np.random.default_rng(int(sys.argv[2]))
counts, bugs = collections.Counter(), {}
work = sys.argv[4]
for i in range(int(sys.argv[3])):
    name, data = seeds[int(rng.integers(len(seeds)))]
    data, kind = mutate(rng, name, data)
    src = os.path.join(work, "m" + os.path.splitext(name)[1])
    dst = os.path.join(work, "m.ert")
    with open(src, "wb") as fh:
        fh.write(data)
    if os.path.exists(dst):
        os.remove(dst)
    try:
        convert(src, dst)
        sess = edgert.load(dst, threads=1)
        sess.run({s.name: rng.standard_normal(s.shape).astype(s.dtype) if s.dtype.kind == "f"
                  else np.zeros(s.shape, s.dtype) for s in sess.inputs})
        counts["ok"] += 1
    except EdgertError as exc:
        counts[type(exc).__name__] += 1
    except Exception as exc:
        key = f"{type(exc).__name__}: {str(exc)[:120]}"
        counts["BUG"] += 1
        bugs.setdefault(key, (name + " " + kind, traceback.format_exc()[-800:]))
    leftovers = [f for f in os.listdir(work) if f.endswith(".tmp")]
    if leftovers:
        counts["BUG"] += 1
        bugs.setdefault("temporary file left behind", (name + " " + kind, str(leftovers)))
        for f in leftovers:
            os.remove(os.path.join(work, f))
    counts["mut:" + name.split(".")[-1] + ":" + kind] += 1
print(json.dumps({"counts": counts, "bugs": bugs}))
"""


def seed_files() -> list:
    """[(file name, bytes)] of valid source models."""
    from converters.zoo.tiny import tiny_convnet
    seeds = [("tiny.onnx", tiny_convnet().SerializeToString())]
    try:
        from converters.zoo.fetch import cache_root
        for name in ("face_detection_short_range", "selfie_segmentation"):
            hits = sorted(cache_root().rglob(f"{name}.tflite"))
            if hits:
                seeds.append((f"{name}.tflite", hits[0].read_bytes()))
    except Exception:  # noqa: BLE001  (no cache: fuzz ONNX only, and say so in the report)
        pass
    return seeds


def _onnx_edit(rng, data: bytes):
    import onnx
    from onnx import TensorProto, helper
    m = onnx.ModelProto.FromString(data)
    g = m.graph
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    kind = pick(["cycle", "dangling", "dim", "initializer", "dtype", "attr", "output", "opset", "domain"])
    node = pick(g.node)
    if kind == "cycle":
        node.input[0] = pick(g.node).output[0]
    elif kind == "dangling":
        node.input[int(rng.integers(len(node.input)))] = "nowhere"
    elif kind == "dim":
        dims = g.input[0].type.tensor_type.shape.dim
        dims[int(rng.integers(len(dims)))].dim_value = int(pick([0, -1, 2**31 - 1, 2**40, 3]))
    elif kind == "initializer" and len(g.initializer):
        init = pick(g.initializer)
        if rng.random() < 0.5 and init.raw_data:
            init.raw_data = init.raw_data[: int(rng.integers(len(init.raw_data)))]
        elif len(init.dims):
            init.dims[0] = int(pick([0, 2**33, init.dims[0] + 1]))
    elif kind == "dtype" and len(g.initializer):
        pick(g.initializer).data_type = int(pick([TensorProto.STRING, TensorProto.BOOL, TensorProto.COMPLEX64, 99]))
    elif kind == "attr":
        node.attribute.append(helper.make_attribute(pick(["strides", "pads", "group", "kernel_shape", "axis"]),
                                                    pick([[0, -3], [2**40], 0, -7, [1] * 9])))
    elif kind == "output":
        node.output[0] = pick(g.node).output[0]
    elif kind == "opset":
        m.opset_import[0].version = int(pick([1, 5, 10**6]))
    else:
        node.domain = "com.example.evil"
    return m.SerializeToString(), "structure:" + kind


def mutate(rng, name: str, data: bytes):
    """(mutated bytes, mutation kind)."""
    kind = ["flip", "extreme", "truncate", "structure"][int(rng.integers(4))]
    if kind == "structure" and name.endswith(".onnx"):
        return _onnx_edit(rng, data)
    buf = bytearray(data)
    if kind == "truncate":
        return bytes(buf[: int(rng.integers(len(buf)))]), kind
    if kind == "extreme":
        pos = int(rng.integers(len(buf)))
        run = bytes([int(rng.choice([0x00, 0xFF, 0x7F, 0x80]))]) * int(rng.integers(1, 9))
        buf[pos:pos + len(run)] = run
        return bytes(buf[: len(data)]), kind
    for pos in rng.integers(0, len(buf), int(rng.integers(1, 6))):
        buf[pos] ^= 1 << int(rng.integers(8))
    return bytes(buf), "flip"


def main(argv=None) -> int:
    from tools.fuzz_common import fuzz_arguments, run_batches
    args = fuzz_arguments(__doc__.splitlines()[0], iterations=2000, seed=0).parse_args(argv)
    # The child names its files by the seed's suffix (m.onnx, m.tflite) inside this directory.
    return run_batches(CHILD, args, "", header=[f"Seeds: {', '.join(name for name, _ in seed_files())}", ""])


if __name__ == "__main__":
    sys.exit(main())
