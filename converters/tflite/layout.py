"""Layout bookkeeping and TFLite's padding rules.

A TFLite tensor may be held in the IR in a permuted order: ``perm`` says that IR dim ``i`` is TFLite
dim ``perm[i]`` (``ir = np.transpose(tfl, perm)``). Identity means "as in the TFLite file" (NHWC for
images); ``NCHW`` = (0, 3, 1, 2) is what the IR's Conv/pool/Resize/DepthToSpace ops take.
"""

from __future__ import annotations

NCHW = (0, 3, 1, 2)


def identity(rank: int) -> tuple:
    return tuple(range(rank))


def inverse(perm) -> tuple:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def relayout(held, want) -> tuple:
    """The Transpose perm that turns a tensor held as ``held`` into one held as ``want``."""
    inv = inverse(held)
    return tuple(inv[w] for w in want)


def ir_axis(perm, tfl_axis: int) -> int:
    """Where TFLite axis ``tfl_axis`` (non-negative) sits in a tensor held as ``perm``."""
    return inverse(perm)[tfl_axis]


def permute(values, perm) -> list:
    """A per-TFLite-dim list reordered for a tensor held as ``perm``."""
    return [values[p] for p in perm]


def only_moves_unit_dims(shape, perm) -> bool:
    """True if transposing ``shape`` by ``perm`` keeps every dim > 1 in order (a reshape would do)."""
    moved = [p for p in perm if shape[p] != 1]
    return moved == sorted(moved)


def tf_padding(padding: str, in_size: int, k: int, stride: int, dilation: int = 1):
    """(out, pad_before, pad_after) exactly as TFLite computes them for SAME or VALID.

    SAME: out = ceil(in / stride); VALID: out = ceil((in - effective_k + 1) / stride). The total
    padding is ``max((out - 1) * stride + effective_k - in, 0)``, ``pad_before = total // 2`` and
    the odd pixel goes after (TFLite's ``ComputePaddingWithOffset``).
    """
    eff = (k - 1) * dilation + 1
    if padding == "SAME":
        out = -(-in_size // stride)
    elif padding == "VALID":
        out = -(-(in_size - eff + 1) // stride)
    else:
        raise ValueError(f"unknown padding {padding!r}")
    if out < 1:
        raise ValueError(f"{padding} padding of a size-{in_size} input with a {eff}-wide window and stride "
                         f"{stride} gives an empty output")
    if padding == "VALID":
        return out, 0, 0
    total = max((out - 1) * stride + eff - in_size, 0)
    return out, total // 2, total - total // 2


def transpose_conv_pads(padding: str, in_size: int, out_size: int, k: int, stride: int):
    """(pad_before, pad_after, output_padding) of an IR ConvTranspose giving TFLite's output.

    TFLite computes the padding of a transposed conv with the forward rule, the requested output size
    playing the input: ``total = max((ceil_or_valid_out - 1) * stride + k - out_size, 0)``,
    ``before = total // 2``. Output pixel ``o`` receives input ``i``, tap ``t`` when
    ``o = i * stride + t - before``; pixels past the full result get only the bias, which the IR
    expresses as ``output_padding``.
    """
    _, before, _ = tf_padding(padding, out_size, k, stride)
    full = stride * (in_size - 1) + k  # extent of the un-cropped result
    after = full - before - out_size
    if after >= 0:
        return before, after, 0
    return before, 0, -after
