"""Export an edgert-convertible float conv net (.onnx or .ert) as a .tflite file, so LiteRT can run
the very same weights (benchmarks of the zoo models and their pruned variants).

    python tools/export_tflite.py mobilenet_v2.onnx -o mobilenet_v2.tflite
    python tools/export_tflite.py pruned90.ert -o pruned90.tflite
    python tools/export_tflite.py model.onnx -o model.tflite --input-shape input=1x3x160x160

4-D inputs and outputs become NHWC, as in every TFLite model. The file is written atomically: an op
the exporter cannot express fails with one line naming the node and op, and leaves no file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _shapes(items):
    shapes = {}
    for item in items or ():
        name, _, dims = item.rpartition("=")
        if not name or not dims:
            raise SystemExit(f"--input-shape wants NAME=1x3x224x224, got {item!r}")
        shapes[name] = tuple(int(d) for d in dims.lower().split("x"))
    return shapes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="an .onnx model or an .ert file")
    ap.add_argument("-o", "--output", required=True, help="the .tflite file to write")
    ap.add_argument("--input-shape", action="append", help="NAME=1x3x224x224 for a dynamic ONNX input")
    args = ap.parse_args(argv)
    from converters.tflite_export import export_tflite
    from edgert.errors import EdgertError
    try:
        report = export_tflite(args.src, args.output, input_shapes=_shapes(args.input_shape) or None)
    except EdgertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"{args.output}: {report.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
