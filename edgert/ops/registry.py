"""One record per IR op (``OpDef``) and the registry that maps op names to records.

An ``OpDef`` holds everything edgert knows about an op, in one place:

* ``attrs``: the attributes the op accepts, with defaults (``REQUIRED`` for none);
* ``infer``: shape and dtype inference with all validation, raising ``ShapeError`` naming the node;
* ``reference``: a slow, readable numpy implementation, the oracle every kernel is tested against;
* ``prepare``: picks a kernel for the shapes at hand, packs weights, declares scratch memory, and
  returns a ``Prepared`` whose ``bind`` turns arena views into the kernel's argument tuple.

Ops whose output is just another view of their input bytes (Reshape) set ``view_of``; ops that may
write their output over an input that dies there (elementwise) set ``inplace``. The planner uses
both to save memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import ShapeError

REQUIRED = object()
REGISTRY: dict = {}


@dataclass
class Prepared:
    """What prepare decided for one node: the kernel, why, and how to call it on arena views."""

    kernel: str
    fn: Callable
    bind: Callable  # (inputs, outputs, scratch) -> tuple of arguments for fn
    scratch: list = field(default_factory=list)  # [(shape, dtype)] live only during this node
    reason: str = ""
    packed: dict = field(default_factory=dict)  # name -> array kept alive for the session (persistent)
    # For the memory planner on several threads (runtime/planner.py, REUSE_GAP): every worker reads
    # all of input 0 (a sparse 1x1 split by output channels), or the workers write the output in
    # bands with little arithmetic per byte (an NCHW depthwise conv split by planes).
    shares_input: bool = False
    writes_bands: bool = False

    @property
    def persistent_bytes(self) -> int:
        return sum(a.nbytes for a in self.packed.values())


class Sequence:
    """A step made of several calls in a row: a conv then a fused residual pass, a kernel then a
    Python range check. ``bind`` returns one argument tuple per call.

    Prefer this to a Python closure that calls kernels: the session resolves each call on its own
    (the ahead-of-time library's entry point, or the numba dispatcher) when it binds, so a sequence
    of kernels starts without numba like a single kernel does, and ``edgert warm`` sees every kernel.
    """

    __slots__ = ("calls",)

    def __init__(self, *calls):
        self.calls = calls

    def __call__(self, *arg_tuples):
        for fn, args in zip(self.calls, arg_tuples):
            fn(*args)


class PrepareContext:
    """What ``infer`` and ``prepare`` may look at besides the node: constants, and the thread count."""

    def __init__(self, graph, threads: int = 1, file=None, options=None, blocked=()):
        self.graph = graph
        self.threads = threads
        self.file = file
        self.options = options or {}
        self.blocked = frozenset(blocked)  # tensors stored channel-blocked (runtime/layout.py)

    def is_blocked(self, name: str) -> bool:
        return bool(name) and name in self.blocked

    def is_const(self, name: str) -> bool:
        return bool(name) and name in self.graph.consts

    def const(self, name: str, dtype=np.float32):
        return self.graph.const_value(name, dtype)


class OpDef:
    """Base class of op records. Subclasses set the class attributes and override the methods."""

    name = ""
    family = ""
    attrs: dict = {}
    num_inputs = (1, 1)  # (min, max); optional inputs may be '' in the node
    num_outputs = (1, 1)
    view_of = None  # index of the input whose bytes output 0 reuses as-is (a reshape)
    inplace = None  # index of the input output 0 may overwrite when that input dies here
    kernels: tuple = ()  # names of the kernels prepare may choose, for inspect and tests

    # --- helpers -------------------------------------------------------------------------------
    def error(self, node, message, hint=None, file=None):
        return ShapeError(message, node=node.name, op=node.op, hint=hint, file=file)

    def resolve_attrs(self, node, file=None) -> dict:
        """Defaults filled in; unknown or missing attributes are errors."""
        unknown = sorted(set(node.attrs) - set(self.attrs))
        if unknown:
            raise self.error(node, f"unknown attribute(s) {', '.join(unknown)}", file=file)
        out = {}
        for key, default in self.attrs.items():
            if key in node.attrs:
                out[key] = node.attrs[key]
            elif default is REQUIRED:
                raise self.error(node, f"missing required attribute '{key}'", file=file)
            else:
                out[key] = default
        return out

    def check_arity(self, node, file=None):
        lo, hi = self.num_inputs
        if not lo <= len(node.inputs) <= hi:
            raise self.error(node, f"takes {lo}..{hi} inputs, got {len(node.inputs)}", file=file)
        for i in range(lo):
            if not node.inputs[i]:
                raise self.error(node, f"required input #{i} is missing", file=file)
        lo, hi = self.num_outputs
        if not lo <= len(node.outputs) <= hi:
            raise self.error(node, f"produces {lo}..{hi} outputs, got {len(node.outputs)}", file=file)

    # --- the contract ------------------------------------------------------------------------
    def infer(self, node, attrs: dict, ins: list, ctx: PrepareContext) -> list:
        """Return [(shape tuple, dtype name)] per output; ``ins`` are TensorInfo (None if omitted)."""
        raise NotImplementedError

    def reference(self, attrs: dict, *inputs) -> tuple:
        """Plain numpy; returns a tuple of outputs."""
        raise NotImplementedError

    def prepare(self, node, attrs: dict, ins: list, outs: list, ctx: PrepareContext) -> Prepared:
        raise NotImplementedError


def register(cls):
    """Class decorator: instantiate the op record and add it to the registry under ``cls.name``."""
    if not cls.name or cls.name in REGISTRY:
        raise RuntimeError(f"op record {cls.__name__} has no name or a duplicate name {cls.name!r}")
    REGISTRY[cls.name] = cls()
    return cls


def get_op(name: str):
    return REGISTRY.get(name)
