"""Long fuzzing run over the .ert loader and runtime: mutate valid files, load and run them.

    python tools/fuzz_ert.py --iterations 20000 --seed 1 [--markdown ROBUSTNESS-fuzz.md]

Each batch runs in a child process so that a hard crash (segfault, abort) is counted instead of
killing the run. Outcomes: loaded-and-ran, each edgert error class, and anything else (a bug:
its exception type and message are listed and deduplicated). Mutations: byte flips, truncation,
extreme header fields, and structured edits of the JSON table (overflowing shapes, wrong dtypes,
dangling references, cycles, out-of-range offsets) with every checksum re-sealed so they reach
the deep checks instead of stopping at the CRC.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import collections, json, sys, traceback
import numpy as np
sys.path.insert(0, sys.argv[1])
from tools.fuzz_ert import mutate, seed_models
import edgert
from edgert.errors import EdgertError
seeds = seed_models()
rng = np.random.default_rng(int(sys.argv[2]))
counts, bugs = collections.Counter(), {}
path = sys.argv[4]
for i in range(int(sys.argv[3])):
    data, kind = mutate(rng, seeds[int(rng.integers(len(seeds)))])
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        sess = edgert.load(path, threads=1)
        sess.run({s.name: rng.standard_normal(s.shape).astype(s.dtype) for s in sess.inputs})
        counts["ok"] += 1
    except EdgertError as exc:
        counts[type(exc).__name__] += 1
    except Exception as exc:
        key = f"{type(exc).__name__}: {str(exc)[:120]}"
        counts["BUG"] += 1
        bugs.setdefault(key, (kind, traceback.format_exc()[-800:]))
    counts["mut:" + kind] += 1
print(json.dumps({"counts": counts, "bugs": bugs}))
"""


def seed_models() -> list:
    """Valid .ert files (as bytes) covering several op families."""
    import tempfile

    import numpy as np
    from converters.builder import GraphBuilder
    from edgert.ir.format import write_ert

    rng = np.random.default_rng(0)
    graphs = []
    b = GraphBuilder()
    b.add_input("x", (1, 4, 8, 8))
    b.add_const("s", rng.standard_normal((1, 4, 1, 1)).astype(np.float32))
    b.add_node("Mul", ["x", "s"], ["m"], {"activation": "relu"})
    b.add_node("MaxPool", ["m"], ["p"], {"kernel": [2, 2], "strides": [2, 2]})
    b.add_node("Reshape", ["p"], ["r"], {"shape": [1, 64]})
    b.add_node("Softmax", ["r"], ["y"], {"axis": 1})
    b.add_output("y")
    graphs.append(b.finish())
    b = GraphBuilder()
    b.add_input("x", (2, 3, 5))
    b.add_const("w", rng.standard_normal((2, 3, 5)).astype(np.float16), dtype="f16")
    b.add_node("Add", ["x", "w"], ["a"])
    b.add_node("Transpose", ["a"], ["t"], {"perm": [2, 0, 1]})
    b.add_node("Concat", ["t", "t"], ["c"], {"axis": 0})
    b.add_node("ReduceMean", ["c"], ["y"], {"axes": [1], "keepdims": 1})
    b.add_output("y")
    graphs.append(b.finish())
    out = []
    with tempfile.TemporaryDirectory() as d:
        for k, g in enumerate(graphs):
            p = Path(d) / f"{k}.ert"
            write_ert(g, p)
            out.append(p.read_bytes())
    return out


HEADER = struct.Struct("<8sIIQQQQQII")
EXTREMES = [0, 1, 63, 64, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1]


def _seal(head_fields, body):
    head = HEADER.pack(*head_fields)
    return head[:60] + struct.pack("<I", zlib.crc32(head[:60])) + body


def _retable(data, table):
    raw = json.dumps(table).replace('"__DEEP__"', "[" * 50000 + "]" * 50000).encode()
    h = list(HEADER.unpack_from(data, 0))
    data_off = (64 + len(raw) + 63) // 64 * 64
    blobs = data[h[5]:]
    body = raw + b"\0" * (data_off - 64 - len(raw)) + blobs
    h[4], h[5], h[7], h[8] = len(raw), data_off, data_off + len(blobs), zlib.crc32(raw)
    return _seal(h, body)


def _table_edit(rng, table):
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    kind = pick(["shape_overflow", "dtype", "dangling", "cycle", "offset", "attr", "op", "dup", "neg", "deep"])
    if kind == "shape_overflow":
        t = pick(table["tensors"])
        t["shape"] = [int(v) for v in rng.choice([2**31, 2**32, 2**62, 0, 1], size=len(t["shape"]) or 1)]
    elif kind == "dtype":
        pick(table["tensors"] + table["blobs"])["dtype"] = pick(["f16", "i64", "u8", "bool", "x9", 5])
    elif kind == "dangling":
        pick(table["nodes"])["inputs"][0] = "ghost"
    elif kind == "cycle":
        n = table["nodes"]
        n[0]["inputs"][0] = n[-1]["outputs"][0]
    elif kind == "offset":
        pick(table["blobs"])["offset"] = int(pick(EXTREMES)) * pick([1, -1])
    elif kind == "attr":
        node = pick(table["nodes"])
        key = pick(list(node["attrs"]) or ["axis"])
        node["attrs"][key] = pick([-(2**40), 2**40, [], [1] * 9, "x", None, 1.5, [-1, -1]])
    elif kind == "op":
        pick(table["nodes"])["op"] = pick(["Conv", "Reshape", "Softmax", "Nope", "Resize", "Gather"])
    elif kind == "dup":
        table["nodes"].append(dict(table["nodes"][0]))
    elif kind == "neg":
        pick(table["tensors"])["shape"] = [-3]
    elif kind == "deep":
        # Deeply nested JSON must not blow the loader's stack; spliced in as text (json.dumps would recurse).
        table["metadata"] = "__DEEP__"
    return kind


def mutate(rng, data: bytes):
    """One random mutation of a valid file; returns (bytes, mutation kind)."""
    kind = ["flip", "truncate", "header", "table", "table", "table"][int(rng.integers(6))]
    buf = bytearray(data)
    if kind == "flip":
        for _ in range(int(rng.integers(1, 16))):
            buf[int(rng.integers(len(buf)))] ^= int(rng.integers(1, 256))
        return bytes(buf), kind
    if kind == "truncate":
        return bytes(buf[: int(rng.integers(len(buf)))]), kind
    h = list(HEADER.unpack_from(data, 0))
    if kind == "header":
        field = int(rng.integers(1, 8))
        h[field] = int(rng.choice(EXTREMES)) & (0xFFFFFFFF if field in (1, 2) else 2**64 - 1)
        return _seal(h, data[64:]), kind
    table = json.loads(data[h[3]:h[3] + h[4]])
    sub = _table_edit(rng, table)
    try:
        return _retable(data, table), "table:" + sub
    except (ValueError, RecursionError):
        return data, "table:unencodable"


def main(argv=None):
    from tools.fuzz_common import fuzz_arguments, run_batches
    args = fuzz_arguments(__doc__.split("\n\n")[0], iterations=5000, seed=1).parse_args(argv)
    return run_batches(CHILD, args, "fuzz.ert")


if __name__ == "__main__":
    sys.exit(main())
