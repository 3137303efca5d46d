"""Convert once, ship small: the runtime never imports the converters, onnx or a reference engine."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"onnx", "onnxruntime", "converters", "tflite", "tflite_runtime", "ai_edge_litert", "flatbuffers",
             "torch", "tensorflow"}
# The CLI may import converters lazily inside the commands that need them (convert, demo).
LAZY_ALLOWED = {"edgert/cli.py", "edgert/demo.py"}


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node, node.module.split(".")[0]


def test_runtime_sources_never_import_host_packages():
    bad = []
    for path in sorted((ROOT / "edgert").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for node, top in _imports(path):
            if top in FORBIDDEN:
                top_level = node.col_offset == 0
                if rel not in LAZY_ALLOWED or top_level:
                    bad.append(f"{rel}:{node.lineno} imports {top}")
    assert not bad, "\n".join(bad)


def test_importing_and_running_edgert_loads_no_host_package(tmp_path):
    from edgert.ir.format import write_ert
    from tests.test_format import small_graph
    model = tmp_path / "m.ert"
    write_ert(small_graph(), model)
    # A fresh interpreter that only imports edgert (and its CLI), loads the model and runs it.
    probe = (
        "import sys, numpy as np, edgert, edgert.cli\n"
        f"s = edgert.load({str(model)!r}); s.run({{'x': np.ones((2, 3), np.float32)}})\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == "", f"edgert imported: {out.stdout.strip()}"


def test_converters_may_import_edgert_but_edgert_not_converters():
    uses_edgert = any(top == "edgert" for path in (ROOT / "converters").rglob("*.py") for _, top in _imports(path))
    assert uses_edgert
