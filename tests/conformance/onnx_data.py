"""ONNX's own backend test data: where it lives, what each test uses, and how to read one.

The node tests ship as ``onnx/backend/test/data/node/<test>/`` in some onnx builds; others (like
the wheel installed here) ship only the Python cases that generate them. Then they are generated
once, from the installed onnx's own ``onnx.backend.test.case.node`` modules, into a cache
(``$EDGERT_ONNX_TEST_DATA`` or ``~/.cache/edgert/onnx-backend-<onnx version>``) with the same
layout: ``model.onnx`` and ``test_data_set_0/{input,output}_<k>.pb``.

Tests are named ``test_x`` for node tests and ``<kind>/test_x`` for the ``pytorch-converted``,
``pytorch-operator`` and ``simple`` model directories; ``light/<model>`` names a light model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

SHIPPED = Path(onnx.__file__).parent / "backend" / "test" / "data"
MODEL_KINDS = ("pytorch-converted", "pytorch-operator", "simple")


def cache_dir() -> Path:
    env = os.environ.get("EDGERT_ONNX_TEST_DATA")
    return Path(env) if env else Path.home() / ".cache" / "edgert" / f"onnx-backend-{onnx.__version__}"


def node_dir() -> Path:
    """The directory holding one sub-directory per node test (generated on first use if needed)."""
    if (SHIPPED / "node").is_dir():
        return SHIPPED / "node"
    root = cache_dir() / "node"
    if not (root / "index.json").is_file():
        _generate_node_tests(root)
    return root


def _generate_node_tests(root: Path) -> None:
    from onnx.backend.test.loader import load_node_model_tests
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".node-", dir=root.parent))
    try:
        for case in load_node_model_tests():
            d = tmp / case.name
            d.mkdir()
            (d / "model.onnx").write_bytes(case.model.SerializeToString())
            inputs, outputs = case.data_sets[0]
            if all(_is_tensor(v) for v in list(inputs) + list(outputs)):
                ds = d / "test_data_set_0"
                ds.mkdir()
                for prefix, values in (("input", inputs), ("output", outputs)):
                    for k, v in enumerate(values):
                        proto = v if isinstance(v, onnx.TensorProto) else numpy_helper.from_array(np.asarray(v))
                        (ds / f"{prefix}_{k}.pb").write_bytes(proto.SerializeToString())
        (tmp / "index.json").write_text(json.dumps(_scan(tmp)))
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _is_tensor(v) -> bool:
    return isinstance(v, onnx.TensorProto) or (isinstance(v, np.ndarray | np.generic) and np.asarray(v).dtype != object)


def _scan(directory: Path) -> dict:
    """{test name: sorted op types of its model} for every test directory under ``directory``."""
    out = {}
    for d in sorted(p for p in directory.iterdir() if (p / "model.onnx").is_file()):
        model = onnx.load(str(d / "model.onnx"), load_external_data=False)
        out[d.name] = sorted({n.op_type for n in model.graph.node})
    return out


def all_tests() -> dict:
    """{test name: sorted op types} over node tests, the model directories and the light models."""
    nodes = node_dir()
    index = nodes / "index.json"
    tests = json.loads(index.read_text()) if index.is_file() else _scan(nodes)
    for kind in MODEL_KINDS:
        if (SHIPPED / kind).is_dir():
            tests.update({f"{kind}/{name}": ops for name, ops in _scan(SHIPPED / kind).items()})
    for path in sorted((SHIPPED / "light").glob("light_*.onnx")):
        model = onnx.load(str(path))
        tests[f"light/{path.stem[len('light_'):]}"] = sorted({n.op_type for n in model.graph.node})
    return tests


def case_path(name: str) -> Path:
    kind, _, rest = name.rpartition("/")
    if kind == "light":
        return SHIPPED / "light" / f"light_{rest}.onnx"
    return (SHIPPED / kind / rest) if kind else node_dir() / name


def read_case(name: str):
    """(model, [(input name, array)], [expected output arrays]) for one test."""
    path = case_path(name)
    if name.startswith("light/"):
        return _read_light(path)
    model = onnx.load(str(path / "model.onnx"))
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    ds = path / "test_data_set_0"
    if not ds.is_dir():
        raise FileNotFoundError(f"{name} has no tensor test data (sequence, map or optional values)")
    inputs = [_read_pb(ds / f"input_{k}.pb") for k in range(len(list(ds.glob("input_*.pb"))))]
    outputs = [_read_pb(ds / f"output_{k}.pb") for k in range(len(list(ds.glob("output_*.pb"))))]
    return model, list(zip(names, inputs)), outputs


def _read_light(path: Path):
    """A light model: weights come from ConstantOfShape nodes; the input is ONNX's runner's
    deterministic dummy data (arange / n); the expected output is stored next to the model."""
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    feeds = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim)
        n = int(np.prod(shape))
        feeds.append((vi.name, (np.arange(n).reshape(shape) / n).astype(np.float32)))
    outputs = [_read_pb(path.with_name(f"{path.stem}_output_{k}.pb")) for k in range(len(model.graph.output))]
    return model, feeds, outputs


def _read_pb(path: Path) -> np.ndarray:
    proto = onnx.TensorProto()
    proto.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(proto)
