"""The single error catalogue of edgert.

Every error edgert raises on purpose is an ``EdgertError``. Each one can name the file, the node and
the op it is about, and says what to do next. The CLI maps each class to its own exit code and
prints one line (the traceback only with ``--debug``).
"""

from __future__ import annotations


class EdgertError(Exception):
    """Base class. ``exit_code`` is what the CLI returns for this kind of failure."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, *, file=None, node=None, op=None, hint=None):
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.node = node
        self.op = op
        self.hint = hint

    def where(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file)
        if self.node is not None:
            parts.append(f"node '{self.node}'" + (f" ({self.op})" if self.op else ""))
        elif self.op:
            parts.append(f"op {self.op}")
        return ": ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ModelFormatError(EdgertError):
    """An .ert file is truncated, corrupted, hostile or of an unknown version."""

    exit_code = 3
    kind = "bad model file"


class GraphError(EdgertError):
    """The graph is inconsistent: dangling references, cycles, duplicate producers."""

    exit_code = 4
    kind = "bad graph"


class ShapeError(EdgertError):
    """Shape or dtype inference failed, or attributes are invalid for the op."""

    exit_code = 5
    kind = "shape error"


class ConversionError(EdgertError):
    """A source model (ONNX, TFLite) cannot be converted."""

    exit_code = 6
    kind = "conversion failed"


class UnsupportedOpError(ConversionError):
    """One or more ops have no edgert equivalent. ``ops`` lists (node name, op type) pairs."""

    exit_code = 7
    kind = "unsupported op"

    def __init__(self, message: str, *, ops=(), **kw):
        super().__init__(message, **kw)
        self.ops = list(ops)


class InputError(EdgertError):
    """Inputs given to ``Session.run`` or the CLI do not match the model."""

    exit_code = 8
    kind = "bad input"


class BoardError(EdgertError):
    """A board profile is missing, malformed or inconsistent."""

    exit_code = 9
    kind = "bad board profile"


class BudgetError(EdgertError):
    """The model does not fit the memory budget."""

    exit_code = 10
    kind = "over memory budget"


class KernelError(EdgertError):
    """A kernel's preconditions do not hold (caught before entering compiled code)."""

    exit_code = 11
    kind = "kernel error"


ALL_ERRORS = (
    EdgertError, ModelFormatError, GraphError, ShapeError, ConversionError,
    UnsupportedOpError, InputError, BoardError, BudgetError, KernelError,
)
