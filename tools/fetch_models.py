"""Download real models (from the RapidOCR and MediaPipe wheels) into the model cache.

    python tools/fetch_models.py                   # both
    python tools/fetch_models.py --rapidocr --cache /data/models

The cache is --cache, else $EDGERT_MODEL_CACHE, else ~/.cache/edgert/models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from converters.zoo.fetch import FETCHERS, FetchError

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rapidocr", action="store_true", help="RapidOCR 1.4.4 ONNX models.")
    ap.add_argument("--mediapipe", action="store_true", help="MediaPipe 0.10.14 TFLite models.")
    ap.add_argument("--cache", type=Path, default=None, help="Cache directory.")
    args = ap.parse_args(argv)
    kinds = [k for k in FETCHERS if getattr(args, k)] or list(FETCHERS)
    status = 0
    for kind in kinds:
        try:
            files = FETCHERS[kind](args.cache)
        except FetchError as exc:
            print(f"{kind}: FAILED\n{exc}", file=sys.stderr)
            status = 1
            continue
        folder = next(iter(files.values())).parent
        print(f"{kind}: {len(files)} files in {folder}")
        for stem, path in sorted(files.items()):
            print(f"  {path.name:48s} {path.stat().st_size / 1e6:7.2f} MB")
    return status


if __name__ == "__main__":
    sys.exit(main())
