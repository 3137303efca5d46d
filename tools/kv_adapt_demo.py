"""Teach a deployed key-value-bottleneck classifier a new class by updating values only.

The classifier (tools/build_codebook_models.kv_classifier: conv encoder -> 16-head key-value
bottleneck -> voting decoder) was trained on classes 0-8; class 9 never reached its values, so
the model cannot predict it. On the "device" we then:

1. run the .ert model on a few labelled samples of the new class and read which key each head
   selected (``edgert.interventions.codes``: the lookup's ids, emitted without a graph output);
2. take SGD steps on the voting decoder's cross-entropy over *those value rows only* (encoder,
   projection and keys stay frozen, so no backward pass through the network is needed);
3. write the new rows into the model file atomically (``edgert.kv_update.update_values``) and
   reload it.

Accuracy on held-out data of all ten classes is printed before and after.

    python tools/kv_adapt_demo.py [--shots 32] [--steps 40] [--keep model.ert]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH, CLASSES, NEW = 32, 10, 9


def predict(sess, images):
    """(predicted labels, KV ids [n, C, 1]) over batches of BATCH."""
    from edgert import interventions
    preds, ids = [], []
    for start in range(0, len(images), BATCH):
        chunk = images[start:start + BATCH]
        feed = np.zeros((BATCH,) + images.shape[1:], np.float32)
        feed[:len(chunk)] = chunk
        outputs, codes = interventions.run_with_codes(sess, {"images": feed})
        preds.append(outputs["logits"][:len(chunk)].argmax(-1))
        ids.append(codes[interventions.kv_layers(sess)[0]][:len(chunk)])
    return np.concatenate(preds), np.concatenate(ids)


def report(title, sess, images, labels):
    pred, _ = predict(sess, images)
    old, new = labels != NEW, labels == NEW
    print(f"{title:<28} all {np.mean(pred == labels):6.1%}   classes 0-8 {np.mean(pred[old] == labels[old]):6.1%}"
          f"   new class {np.mean(pred[new] == labels[new]):6.1%}")
    return np.mean(pred == labels)


def adapt(path, sess, images, labels, steps, lr):
    """SGD on the selected value rows; returns the number of rows written."""
    from edgert.ir.format import read_ert
    from edgert.kv_update import gradient_rows, update_values
    graph = read_ert(path)
    node = next(n for n in graph.nodes if n.op == "KeyValueLookup")
    V = np.array(graph.consts[node.inputs[2]], dtype=np.float64)  # [C, M, classes]
    _, ids = predict(sess, images)  # keys are frozen: the selected rows never change
    C = V.shape[0]
    touched = set()
    for _ in range(steps):
        logits = V[np.arange(C)[None, :, None], ids].sum(2).mean(1)
        rows, grad = gradient_rows(ids, logits, labels)
        V[rows[:, 0], rows[:, 1]] -= lr * grad * C / len(images)
        touched.update(map(tuple, rows))
    rows = np.array(sorted(touched))
    update_values(path, node.name, (rows, V[rows[:, 0], rows[:, 1]]))
    return len(rows), V.shape[0] * V.shape[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shots", type=int, default=32, help="labelled samples of the new class used on the device")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--lr", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="also write the adapted model here")
    args = ap.parse_args(argv)

    import edgert
    import edgert.ops.codebook
    from converters.convert import convert
    from converters.onnx_codebook import install_hooks
    from tools.build_codebook_models import kv_classifier, synthetic_images

    install_hooks()
    t0 = time.perf_counter()
    model = kv_classifier("custom", batch=BATCH, heads=32, keys=256, seed=args.seed, seen=range(NEW))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "classifier.ert"
        convert(model, path)
        print(f"built, trained (classes 0-8) and converted the classifier in {time.perf_counter() - t0:.1f} s")
        test_x, test_y = synthetic_images(1000, CLASSES, seed=args.seed + 100)
        shots_x, _ = synthetic_images(40 * args.shots, CLASSES, seed=args.seed + 200)
        shots_x = shots_x[synthetic_images(40 * args.shots, CLASSES, seed=args.seed + 200)[1] == NEW][:args.shots]
        sess = edgert.load(path, threads=1)
        before = report("before (trained on 0-8)", sess, test_x, test_y)
        t1 = time.perf_counter()
        written, total = adapt(path, sess, shots_x, np.full(len(shots_x), NEW), args.steps, args.lr)
        seconds = time.perf_counter() - t1
        after = report(f"after {len(shots_x)} shots of class {NEW}", edgert.load(path, threads=1), test_x, test_y)
        print(f"updated {written} of {total} value rows ({written / total:.1%}) in {seconds * 1000:.0f} ms, "
              f"file rewritten atomically; accuracy {before:.1%} -> {after:.1%}")
        if args.keep:
            args.keep.write_bytes(path.read_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
