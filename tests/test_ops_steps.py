"""A step that calls kernels must say so as data (a kernel, or a ``Sequence`` of calls), not hide them
in a Python closure: the session resolves every call to the AOT library or the JIT when it binds, and
``edgert warm`` compiles the calls it can see. A closure calling a kernel would enable numba on the
first run of an AOT start and never be compiled ahead of time."""

import ast
import importlib
from pathlib import Path

import pytest

from edgert import aot

OPS = Path(__file__).resolve().parents[1] / "edgert" / "ops"


def _kernel_bindings(tree, package="edgert"):
    """{local name: module or object} for what an ops file imports from ``edgert.kernels``."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level >= 2 and (node.module or "").startswith("kernels"):
            base = f"{package}.{node.module}"
            for alias in node.names:
                try:
                    bound[alias.asname or alias.name] = importlib.import_module(f"{base}.{alias.name}")
                except ImportError:
                    bound[alias.asname or alias.name] = getattr(importlib.import_module(base), alias.name)
    return bound


def _is_kernel(obj):
    return aot.kernel_name(obj) is not None


def _closures_calling_kernels(path, package="edgert"):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bound = _kernel_bindings(tree, package)
    found = []
    for outer in ast.walk(tree):
        if not isinstance(outer, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(outer):
            if inner is outer or not isinstance(inner, (ast.FunctionDef, ast.Lambda)):
                continue
            for call in ast.walk(inner):
                if not isinstance(call, ast.Call):
                    continue
                f = call.func
                if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in bound:
                    target = getattr(bound[f.value.id], f.attr, None)
                elif isinstance(f, ast.Name) and f.id in bound:
                    target = bound[f.id]
                else:
                    continue
                if _is_kernel(target):
                    found.append(f"{path.name}:{call.lineno} {getattr(inner, 'name', '<lambda>')} calls {ast.unparse(f)}")
    return found


@pytest.mark.arm
def test_no_op_hides_kernel_calls_in_a_closure():
    offenders = [hit for path in sorted(OPS.glob("*.py")) for hit in _closures_calling_kernels(path)]
    assert offenders == [], "use ops.registry.Sequence instead:\n" + "\n".join(offenders)


def test_the_check_sees_a_closure(tmp_path):
    path = tmp_path / "op.py"
    path.write_text("from ..kernels import gemm as KG\n"
                    "from ..kernels.act import reference_act\n"
                    "def prepare():\n"
                    "    def run(a):\n"
                    "        reference_act(a)\n"  # plain numpy: fine
                    "        KG.f32_gemm_rows(a)\n"
                    "    return run\n")
    assert _closures_calling_kernels(path) == ["op.py:6 run calls KG.f32_gemm_rows"]
