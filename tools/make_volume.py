"""Write a synthetic 4-modality brain MRI volume as .npy: [1, 4, D, H, W] float32, BraTS-sized by default.

Not real data: an ellipsoidal "brain" with a spherical "tumour" (necrotic core, enhancing rim,
oedema halo) whose contrast differs per modality (T1, T1ce, T2, FLAIR), plus smooth noise, each
modality z-scored inside the brain as BraTS pipelines do. Deterministic for a seed.

    python tools/make_volume.py --out build/brats_volume.npy                 # 1 x 4 x 155 x 240 x 240
    python tools/make_volume.py --out /tmp/v.npy --shape 16,16,16 --seed 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# Intensity of (background brain, oedema, enhancing rim, necrotic core) per modality.
CONTRAST = {"t1": (1.0, 0.8, 0.9, 0.5), "t1ce": (1.0, 0.9, 2.0, 0.4), "t2": (1.0, 1.8, 1.4, 2.2),
            "flair": (1.0, 2.0, 1.3, 0.8)}


def make_volume(shape=(155, 240, 240), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    D, H, W = shape
    z, y, x = np.ogrid[:D, :H, :W]
    zc, yc, xc = (D - 1) / 2, (H - 1) / 2, (W - 1) / 2
    brain = ((z - zc) / (0.45 * D)) ** 2 + ((y - yc) / (0.42 * H)) ** 2 + ((x - xc) / (0.36 * W)) ** 2 <= 1.0
    tz, ty, tx = (c + s * rng.uniform(-0.15, 0.15) for c, s in ((zc, D), (yc, H), (xc, W)))
    r = np.sqrt(((z - tz) / max(D, 1)) ** 2 + ((y - ty) / max(H, 1)) ** 2 + ((x - tx) / max(W, 1)) ** 2)
    radius = rng.uniform(0.06, 0.1)
    regions = [r < 1.8 * radius, r < radius, r < 0.6 * radius]  # oedema, enhancing rim, necrotic core
    out = np.empty((1, 4, D, H, W), np.float32)
    for m, levels in enumerate(CONTRAST.values()):
        v = np.where(brain, np.float32(levels[0]), np.float32(0.0))
        for region, level in zip(regions, levels[1:]):
            v = np.where(region & brain, np.float32(level), v)
        coarse = rng.standard_normal((max(D // 8, 1), max(H // 8, 1), max(W // 8, 1))).astype(np.float32)
        smooth = np.kron(coarse, np.ones((8, 8, 8), np.float32))[:D, :H, :W]
        smooth = np.pad(smooth, [(0, n - s) for n, s in zip(shape, smooth.shape)], mode="edge")
        v = v + 0.05 * smooth + 0.02 * rng.standard_normal(shape).astype(np.float32)
        inside = v[brain]
        mean, std = (float(inside.mean()), float(inside.std()) or 1.0) if inside.size else (0.0, 1.0)
        out[0, m] = np.where(brain, (v - mean) / std, 0.0)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--shape", default="155,240,240", help="D,H,W (default: BraTS 155 x 240 x 240)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    volume = make_volume(shape, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from edgert.fileio import atomic_write
    with atomic_write(args.out) as fh:
        np.save(fh, volume)
    print(f"wrote {args.out}: {list(volume.shape)} float32 ({volume.nbytes / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
