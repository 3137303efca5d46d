"""Group normalisation (InstanceNorm is the case groups == channels) over any spatial rank.

Statistics are taken in two passes (mean, then the mean of squared deviations) with float64
accumulators: a one-pass E[x^2] - E[x]^2 loses digits on volumes of millions of voxels.
"""

from __future__ import annotations

import math

from ._jit import kernel, prange
from .act import apply_act


@kernel(parallel=True)
def f32_group_norm(x, scale, bias, out, n_images, groups, cg, spatial, eps, code, a, b):
    """x, out: [N, groups*cg, spatial] flat; scale, bias: one value per channel."""
    count = cg * spatial
    C = groups * cg
    for item in prange(n_images * groups):
        n = item // groups
        gi = item % groups
        base = (n * C + gi * cg) * spatial
        s = 0.0
        for i in range(count):
            s += x[base + i]
        mean = s / count
        q = 0.0
        for i in range(count):
            d = x[base + i] - mean
            q += d * d
        inv = 1.0 / math.sqrt(q / count + eps)
        for ci in range(cg):
            c = gi * cg + ci
            k = scale[c] * inv
            t = bias[c] - mean * k
            cb = base + ci * spatial
            for i in range(spatial):
                out[cb + i] = apply_act(x[cb + i] * k + t, code, a, b)
