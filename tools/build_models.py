"""Write the zoo's seeded ONNX models to a directory.

    python tools/build_models.py --out models/            # every model
    python tools/build_models.py --out models/ --only mobilenet_v2 --seed 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from converters.zoo import MODELS, count_parameters

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="Directory for the .onnx files.")
    ap.add_argument("--only", choices=sorted(MODELS), help="Build just this model.")
    ap.add_argument("--seed", type=int, default=0, help="Weight seed (default 0).")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in [args.only] if args.only else list(MODELS):
        model = MODELS[name](seed=args.seed)
        path = args.out / f"{name}.onnx"
        data = model.SerializeToString()
        # Temp file + rename: an interrupted run never leaves a truncated model behind.
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=args.out)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        print(f"{path}  {len(data) / 1e6:.1f} MB  {count_parameters(model) / 1e6:.2f} M parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
