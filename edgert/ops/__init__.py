"""IR op records. Importing this package registers every op."""

from .registry import REGISTRY, REQUIRED, OpDef, Prepared, PrepareContext, get_op, register  # noqa: F401

# Each module registers its ops on import. Keep this list sorted; one module per op family.
from . import elementwise  # noqa: E402,F401
