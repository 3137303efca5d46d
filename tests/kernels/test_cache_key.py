"""The numba cache directory must change when a shared kernel helper changes, and only then."""

from pathlib import Path

from edgert.kernels import _jit


def _write(dir_: Path, name: str, text: str) -> None:
    (dir_ / name).write_text(text, encoding="utf-8")


def test_shared_modules_are_found_from_imports(tmp_path):
    _write(tmp_path, "_jit.py", "")
    _write(tmp_path, "act.py", "from ._jit import kernel\n")
    _write(tmp_path, "conv.py", "from .act import apply_act\nfrom . import im2col, gemm\n")
    _write(tmp_path, "leaf.py", "import numpy as np\n")
    assert _jit._shared_modules(tmp_path) == {"_jit.py", "act.py", "im2col.py", "gemm.py"}


def test_digest_follows_shared_helpers_not_leaf_files(tmp_path, monkeypatch):
    for name, text in {"_jit.py": "", "act.py": "from ._jit import kernel\nX = 1\n",
                       "conv.py": "from .act import X\n"}.items():
        _write(tmp_path, name, text)
    monkeypatch.setattr(_jit, "__file__", str(tmp_path / "_jit.py"))
    base = _jit._source_digest()
    _write(tmp_path, "conv.py", "from .act import X\nY = 2\n")   # leaf edit: numba's own check covers it
    assert _jit._source_digest() == base
    _write(tmp_path, "act.py", "from ._jit import kernel\nX = 3\n")  # shared helper edit
    assert _jit._source_digest() != base
