"""Seeded ONNX models with codebook layers, each in two forms: the ``ai.edgert`` custom op, and the
plain-op subgraph a clean PyTorch re-implementation exports (notes §3.1, §3.2).

* ``codebook_block``: a transformer MLP sublayer (LayerNorm -> MatMul -> Relu -> MatMul -> residual)
  whose output is snapped by a group codebook (per-group LayerNorm, top-k, mean of the codes), then
  projected; the chosen codes are a second output. Plain form: Reshape -> LayerNormalization ->
  Mul/Add -> Einsum('btgd,gkd->btgk') -> Div(ReduceL2) -> TopK -> Add(offsets) -> Gather ->
  ReduceMean -> Reshape (euclidean: 2*Einsum - |C|^2; dot: the Einsum alone).
* ``kv_classifier``: a small conv encoder (Conv-Relu-Conv-Relu-GlobalAveragePool) -> discrete
  key-value bottleneck -> voting decoder (mean over heads), trained here on synthetic images.
  Plain form as the official module exports: Einsum projection -> Transpose -> |q|^2 - 2 q.K +
  |K|^2 -> Neg -> ArgMax -> Unsqueeze -> Expand -> GatherElements(values) -> Transpose -> ReduceMean.

Only onnx and numpy (and edgert's own numpy helpers); every draw comes from ``seed``.

    python tools/build_codebook_models.py --out models/
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OPSET, IR_VERSION, DOMAIN = 17, 8, "ai.edgert"


class Writer:
    def __init__(self, name):
        self.name, self.nodes, self.inits, self.n = name, [], [], 0

    def const(self, name, value):
        value = np.asarray(value)
        value = value.astype(np.float32) if value.dtype == np.float64 else value
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op, inputs, outputs=1, domain="", **attrs):
        self.n += 1
        outs = [f"{op.lower()}{self.n}_{i}" for i in range(outputs)] if isinstance(outputs, int) else outputs
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=f"{op.lower()}{self.n}", domain=domain,
                                           **attrs))
        return outs[0] if len(outs) == 1 else outs

    def model(self, inputs, outputs, custom=False):
        graph = helper.make_graph(self.nodes, self.name,
                                  [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                                  [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs], self.inits)
        opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid(DOMAIN, 1)] if custom else [])
        m = helper.make_model(graph, opset_imports=opsets, producer_name="edgert.codebook", ir_version=IR_VERSION)
        onnx.checker.check_model(m)
        return m


# --- codebook features ----------------------------------------------------------------------------------
def snap_plain(w, x, C, gamma, beta, k, metric, rows):
    """The clean re-implementation's export of a group codebook on x [rows..., G*dg]; returns (y, ids)."""
    G, K, dg = C.shape
    lead = [0] * len(rows)
    xg = w.node("Reshape", [x, w.const(f"{x}/grouped", np.array(lead + [G, dg], np.int64))])
    h = w.node("LayerNormalization", [xg, w.const("ln/unit", np.ones(dg, np.float32))], axis=-1, epsilon=1e-5)
    h = w.node("Add", [w.node("Mul", [h, w.const("cb/gamma", gamma)]), w.const("cb/beta", beta)])
    cb = w.const("cb/codebook", C)
    s = w.node("Einsum", [h, cb], equation="btgd,gkd->btgk" if len(rows) == 2 else "bgd,gkd->bgk")
    if metric == "inner_product":
        s = w.node("Div", [s, w.node("ReduceL2", [cb], axes=[-1], keepdims=0)])
    elif metric == "euclidean":  # -|h-c|^2 = 2 h.c - |c|^2 - |h|^2; the |h|^2 row term is dropped
        s = w.node("Sub", [w.node("Mul", [s, w.const("two", np.float32(2.0))]),
                           w.node("ReduceSumSquare", [cb], axes=[-1], keepdims=0)])
    _, ids = w.node("TopK", [s, w.const("k", np.array([k], np.int64))], outputs=["topk/values", "codes"], axis=-1)
    flat_ids = w.node("Add", [ids, w.const("cb/offsets", (np.arange(G) * K).reshape(G, 1).astype(np.int64))])
    flat = w.node("Reshape", [cb, w.const("cb/flat", np.array([G * K, dg], np.int64))])
    y = w.node("ReduceMean", [w.node("Gather", [flat, flat_ids], axis=0)], axes=[-2], keepdims=0)
    return w.node("Reshape", [y, w.const("cb/merged", np.array(lead + [G * dg], np.int64))]), ids


def codebook_block(form="plain", batch=1, tokens=8, d=64, groups=4, codes=128, k=8, metric="inner_product", seed=0):
    """x [batch, tokens, d] -> (y [batch, tokens, d], codes [batch, tokens, groups, k] int64)."""
    rng = np.random.default_rng(seed)
    dg = d // groups
    w = Writer(f"codebook_block_{form}")
    x = "x"
    h = w.node("LayerNormalization", [x, w.const("ln1/scale", 1 + 0.1 * rng.standard_normal(d)),
                                      w.const("ln1/bias", 0.1 * rng.standard_normal(d))], axis=-1)
    h = w.node("MatMul", [h, w.const("mlp/w1", rng.standard_normal((d, 4 * d)) / np.sqrt(d))])
    h = w.node("Relu", [w.node("Add", [h, w.const("mlp/b1", 0.1 * rng.standard_normal(4 * d))])])
    h = w.node("MatMul", [h, w.const("mlp/w2", rng.standard_normal((4 * d, d)) / np.sqrt(4 * d))])
    h = w.node("Add", [x, w.node("Add", [h, w.const("mlp/b2", 0.1 * rng.standard_normal(d))])])
    C = rng.standard_normal((groups, codes, dg)).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, (groups, dg)).astype(np.float32)
    beta = (0.1 * rng.standard_normal((groups, dg))).astype(np.float32)
    if form == "plain":
        y, ids = snap_plain(w, h, C, gamma, beta, k, metric, rows=[batch, tokens])
    else:
        y, ids = w.node("CodebookSnap", [h, w.const("cb/codebook", C), w.const("cb/gamma", gamma),
                                         w.const("cb/beta", beta)], outputs=["snap/y", "codes"], domain=DOMAIN,
                        k=k, metric=metric, num_groups=groups)
    w.node("MatMul", [y, w.const("out/w", rng.standard_normal((d, d)) / np.sqrt(d))], outputs=["y"])
    return w.model([("x", [batch, tokens, d])], [("y", TensorProto.FLOAT, [batch, tokens, d]),
                                                 (ids, TensorProto.INT64, [batch, tokens, groups, k])],
                   custom=form != "plain")


# --- discrete key-value bottleneck classifier ---------------------------------------------------------------
def synthetic_images(n, classes=10, seed=0, size=16, noise=0.4):
    """n images [n, 3, size, size] of ``classes`` smooth random templates plus noise; labels [n]."""
    t = np.random.default_rng(12345)  # the templates are fixed: every seed draws from the same classes
    yy, xx = np.mgrid[0:size, 0:size] / size
    templates = np.stack([np.stack([np.sin(2 * np.pi * (t.uniform(0.5, 2) * xx + t.uniform(0.5, 2) * yy + t.random()))
                                    for _ in range(3)]) for _ in range(classes)])
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    images = templates[labels] + noise * rng.standard_normal((n, 3, size, size))
    return images.astype(np.float32), labels


def _conv(x, w, stride):
    """numpy Conv 3x3, pad 1 (the encoder's forward for training the bottleneck)."""
    _, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    oh, ow = (h - 1) // stride + 1, (wd - 1) // stride + 1
    cols = np.stack([xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] for i in range(3) for j in range(3)], 2)
    return np.einsum("nckhw,ock->nohw", cols, w.reshape(w.shape[0], c, 9))


def encoder(rng, channels=(3, 16, 32)):
    return [(rng.standard_normal((co, ci, 3, 3)) * np.sqrt(2 / (9 * ci))).astype(np.float32)
            for ci, co in itertools.pairwise(channels)]


def encode(x, weights):
    for w in weights:
        x = np.maximum(_conv(x, w, 2), 0)
    return x.mean((2, 3))


def train_bottleneck(z, labels, heads, keys, dk, classes, rng, seen, epochs=30, lr=2.0):
    """Projection, k-means keys (frozen), then values by SGD on the voting decoder's cross-entropy."""
    from edgert.kv_update import gradient_rows
    D = z.shape[1]
    P = rng.standard_normal((heads, D, dk))
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    q = np.einsum("nd,cdk->nck", z, P)
    K = q[rng.choice(len(z), keys, replace=len(z) < keys)].transpose(1, 0, 2).copy()  # [C, M, dk]

    def nearest(K):  # [n, C]: |K|^2 - 2 q.K ranks like |q - K|^2
        return ((K ** 2).sum(-1)[None] - 2 * np.einsum("nck,cmk->ncm", q, K)).argmin(-1)

    heads_of = np.broadcast_to(np.arange(heads), (len(z), heads))
    for _ in range(10):  # k-means, then the keys are frozen
        ids = nearest(K)
        sums, counts = np.zeros_like(K), np.zeros(K.shape[:2])
        np.add.at(sums, (heads_of, ids), q)
        np.add.at(counts, (heads_of, ids), 1)
        K = np.where(counts[..., None] > 0, sums / np.maximum(counts, 1)[..., None], K)
    ids = nearest(K)
    V = np.zeros((heads, keys, classes))
    mask = np.isin(labels, seen)
    for _ in range(epochs):
        for batch in np.array_split(rng.permutation(np.nonzero(mask)[0]), 8):
            logits = V[np.arange(heads)[None], ids[batch]].mean(1)
            rows, grad = gradient_rows(ids[batch][..., None], logits, labels[batch])
            V[rows[:, 0], rows[:, 1]] -= lr * grad / len(batch) * heads
    return P.astype(np.float32), K.astype(np.float32), V.astype(np.float32)


def kv_plain(w, z, P, K, V):
    """The official DKVB module's TorchScript export (notes §3.1) of lookup + voting decoder."""
    q = w.node("Transpose", [w.node("Einsum", [z, w.const("kv/proj", P)], equation="bd,cdk->bck")], perm=[1, 0, 2])
    qn = w.node("Unsqueeze", [w.node("Einsum", [q, q], equation="cid,cid->ci"), w.const("kv/ax2", np.array([2]))])
    keys = w.const("kv/keys", K)
    kn = w.node("Unsqueeze", [w.node("Einsum", [keys, keys], equation="cjd,cjd->cj"), w.const("kv/ax1", np.array([1]))])
    dots = w.node("Einsum", [q, keys], equation="cid,cjd->cij")
    d2 = w.node("Add", [w.node("Sub", [qn, w.node("Mul", [dots, w.const("kv/two", np.float32(2))])]), kn])
    ids = w.node("ArgMax", [w.node("Neg", [d2])], axis=-1, keepdims=0)
    shape = w.node("Concat", [w.node("Shape", [ids]), w.const("kv/dv", np.array([V.shape[2]], np.int64))], axis=0)
    idx = w.node("Expand", [w.node("Unsqueeze", [ids, w.const("kv/ax2b", np.array([2]))]), shape])
    vals = w.node("GatherElements", [w.const("kv/values", V), idx], axis=1)  # [C, B, dv]
    return w.node("ReduceMean", [w.node("Transpose", [vals], perm=[1, 0, 2])], axes=[1], keepdims=0,)


def kv_classifier(form="plain", batch=1, heads=16, keys=64, dk=8, classes=10, seed=0, seen=None, train_size=2000):
    """images [batch, 3, 16, 16] -> logits [batch, classes]. ``seen``: classes the values were trained
    on (default all); the rest keep zero values (the adaptation demo teaches them on the device)."""
    rng = np.random.default_rng(seed)
    weights = encoder(rng)
    x, y = synthetic_images(train_size, classes, seed=seed + 1)
    seen = list(range(classes)) if seen is None else list(seen)
    P, K, V = train_bottleneck(encode(x, weights).astype(np.float64), y, heads, keys, dk, classes, rng, seen)
    w = Writer(f"kv_classifier_{form}")
    h = "images"
    for i, wt in enumerate(weights):
        h = w.node("Relu", [w.node("Conv", [h, w.const(f"enc/conv{i}", wt)], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                   strides=[2, 2])])
    z = w.node("Flatten", [w.node("GlobalAveragePool", [h])], axis=1)
    if form == "plain":
        kv_plain(w, z, P, K, V)
    else:
        w.node("KeyValueLookup", [z, w.const("kv/proj", P), w.const("kv/keys", K), w.const("kv/values", V)],
                        domain=DOMAIN, topk=1, metric="sqeuclidean", split="projection", combine="vote")
    w.nodes[-1].output[0] = "logits"
    return w.model([("images", [batch, 3, 16, 16])], [("logits", TensorProto.FLOAT, [batch, classes])],
                   custom=form != "plain")


MODELS = {f"{name}_{form}": functools.partial(fn, form=form)
          for name, fn in (("codebook_block", codebook_block), ("kv_classifier", kv_classifier))
          for form in ("plain", "custom")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="Directory for the .onnx files.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, fn in MODELS.items():
        model = fn(seed=args.seed)
        onnx.save(model, args.out / f"{name}.onnx")
        print(f"{args.out / name}.onnx  {len(model.graph.node)} nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
