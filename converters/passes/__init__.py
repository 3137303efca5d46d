"""Graph passes over the edgert IR, shared by every frontend.

Each pass is a function ``pass(graph) -> int`` (how many rewrites it made) in its own module.
``run_passes`` applies them in order, repeatedly, until none changes anything, and re-runs edgert's
shape inference after every pass that changed the graph, so a pass bug surfaces at the pass that
caused it instead of at load time on a board.
"""

from __future__ import annotations

from edgert.errors import ConversionError, EdgertError
from edgert.runtime.prepare import infer_graph

from .eliminate_dead import eliminate_dead
from .fold_batchnorm import fold_batchnorm
from .fold_concat_conv import fold_concat_conv
from .fold_constants import fold_constants
from .fuse_activation import fuse_activation
from .fuse_add_prelu import fuse_add_prelu
from .fuse_conv_add import fuse_conv_add
from .fuse_hardswish import fuse_hardswish
from .fuse_mbconv import fuse_mbconv
from .fuse_pad import fuse_pad
from .fuse_reversible import fuse_reversible
from .remove_identity import remove_identity
from .sparsify import fuse_residual, sparsify

# Order matters within a round: folding first exposes identities; batchnorm folding before
# activation fusion (a fused layer takes no more affine folds); hard-swish recognition before
# activation fusion (which then folds the HardSwish into its producer); reversible blocks before
# activation fusion (their Adds must still be plain), their MBConv branches after it (the fused op
# takes the activations along); sparse weight storage once weights and activations are final (its op
# takes no more folds), then residual Adds into the sparse layers; dead code last. Adds feeding a PRelu
# go into the PRelu after activation fusion (an Add that took a Relu is no longer plain); the remaining
# residual Adds into the dense 1x1 conv producing an operand once the sparse layers took theirs.
PASSES = (fold_constants, remove_identity, fold_batchnorm, fuse_pad, fuse_hardswish, fuse_reversible,
          fuse_activation, fuse_add_prelu, fuse_mbconv, fold_concat_conv, sparsify, fuse_residual, fuse_conv_add,
          eliminate_dead)
MAX_ROUNDS = 50


def validate(graph, file=None, after="") -> None:
    """Re-run edgert's inference over the graph (every declared shape must still hold)."""
    try:
        infer_graph(graph, file=file, check_declared=True)
        graph.validate(file=file)
    except EdgertError as exc:
        raise ConversionError(f"internal error: pass {after} left an invalid graph: {exc.message}", file=file,
                              node=exc.node, op=exc.op) from None


def run_passes(graph, progress=None, file=None, passes=PASSES) -> dict:
    """Apply ``passes`` to a fixpoint. Returns {pass name: rewrites made}."""
    counts = {p.__name__: 0 for p in passes}
    for round_ in range(MAX_ROUNDS):
        changed = 0
        for k, p in enumerate(passes):
            n = p(graph)
            if n:
                validate(graph, file, p.__name__)
                counts[p.__name__] += n
                changed += n
            if progress and round_ == 0:
                progress("optimize", k + 1, len(passes))
        if not changed:
            break
    return counts


__all__ = [
    "PASSES",
    "eliminate_dead",
    "fold_batchnorm",
    "fold_concat_conv",
    "fold_constants",
    "fuse_activation",
    "fuse_add_prelu",
    "fuse_conv_add",
    "fuse_hardswish",
    "fuse_mbconv",
    "fuse_pad",
    "fuse_residual",
    "fuse_reversible",
    "remove_identity",
    "run_passes",
    "sparsify",
    "validate",
]
