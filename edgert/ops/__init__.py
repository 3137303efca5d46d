"""IR op records. Importing this package registers every op (see docs/IR.md for their semantics)."""

from .registry import REGISTRY, REQUIRED, OpDef, Prepared, PrepareContext, get_op, register  # noqa: F401

# Each module registers its ops on import: one module per op family.
from . import elementwise  # noqa: E402,F401
from . import conv  # noqa: E402,F401
from . import linear  # noqa: E402,F401
from . import pool  # noqa: E402,F401
from . import reduce  # noqa: E402,F401
from . import shape  # noqa: E402,F401
from . import resize  # noqa: E402,F401
from . import codebook  # noqa: E402,F401
from . import volume  # noqa: E402,F401
from . import norm  # noqa: E402,F401
from . import sparse  # noqa: E402,F401
from . import mbconv  # noqa: E402,F401
from . import layout  # noqa: E402,F401
