"""Recognise plain-op codebook-feature and key-value-bottleneck subgraphs and fuse them (ONNX level).

Anchored on each selection node (TopK, ArgMax, ArgMin) the matcher reads:

1. the score: monotone wrappers (Neg, Sqrt, Pow 0.5, Clip/Relu at 0) around a linear combination
   of one bilinear *core* (Einsum or MatMul of a runtime query with a constant codebook),
   per-code constants (|C|, |K|^2) and per-row terms (|q|^2, constant along the code axis). The
   per-code scale w and offset a it finds name the metric: a = 0 and w*|c| constant -> inner
   product (cosine order); w constant and a = -w|c|^2/2 -> (squared) Euclidean; a = 0 and w
   constant -> dot;
2. downstream: Gather of the *same* codebook (with group offsets) then ReduceMean/ReduceSum(+Div)
   over the slots -> CodebookSnap; GatherElements (or Gather) of another constant -> KeyValueLookup;
3. upstream of the query: LayerNormalization (+ Mul/Add affine) of a Reshape of X for CF, the
   projection Einsum through Transposes for KV.

``converters.onnx_codebook_fuse`` checks each candidate numerically and rewrites the graph.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper


class NoMatch(Exception):
    pass


def _need(cond, why):
    if not cond:
        raise NoMatch(why)


class _Model:
    """Indexed view of a ModelProto: producers, consumers, known values, inferred shapes."""

    def __init__(self, model, input_shapes):
        self.model = model
        g = model.graph
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.consumers = defaultdict(list)
        for n in g.node:
            for i in n.input:
                if i:
                    self.consumers[i].append(n)
        self.outputs = {o.name for o in g.output}
        self.opsets = {imp.domain or "": imp.version for imp in model.opset_import}
        self.known = {}
        for init in g.initializer:
            try:
                self.known[init.name] = numpy_helper.to_array(init)
            except (ValueError, KeyError, TypeError):
                pass  # a damaged initializer: matching skips it and the loader reports it by name
        self.shapes = {}
        fixed = onnx.ModelProto()
        fixed.CopyFrom(model)
        for vi in fixed.graph.input:
            if input_shapes and vi.name in input_shapes:
                for d, n in zip(vi.type.tensor_type.shape.dim, input_shapes[vi.name]):
                    d.Clear()
                    d.dim_value = int(n)
        try:
            fixed = onnx.shape_inference.infer_shapes(fixed)
        except Exception:  # noqa: BLE001, S110  (shapes are a hint: without them fewer patterns match)
            pass
        for vi in list(fixed.graph.input) + list(fixed.graph.value_info) + list(fixed.graph.output):
            t = vi.type.tensor_type
            if t.HasField("shape"):
                self.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        self.input_shapes = {vi.name: self.shapes.get(vi.name) for vi in fixed.graph.input}

    def value(self, name):
        """The value of a tensor known at conversion time (folded with onnx's evaluator), else None."""
        if not name:
            return None
        if name in self.known:
            return self.known[name]
        node = self.producer.get(name)
        if node is None or node.domain not in ("", "ai.onnx") or node.op_type.startswith("Random"):
            self.known[name] = None
            return None
        if node.op_type == "Shape":  # static shapes make Shape of a runtime tensor a constant
            shape = self.shapes.get(node.input[0])
            value = None if shape is None or None in shape else np.array(shape, np.int64)
            start, end = _attr(node, "start", 0), _attr(node, "end", None)
            self.known[name] = None if value is None else value[start:end]
            return self.known[name]
        feeds = {}
        for i in node.input:
            if i:
                v = self.value(i)
                if v is None:
                    self.known[name] = None
                    return None
                feeds[i] = v
        from onnx.reference import ReferenceEvaluator
        try:
            results = ReferenceEvaluator(node, opsets=self.opsets).run(None, feeds)
        except Exception:  # noqa: BLE001  (not foldable: treated as a runtime tensor)
            results = [None] * len(node.output)
        for o, v in zip(node.output, results):
            self.known[o] = None if v is None else np.asarray(v)
        return self.known[name]

    def shape(self, name):
        v = self.value(name)
        return tuple(v.shape) if v is not None else self.shapes.get(name)

    def rank(self, name):
        s = self.shape(name)
        return None if s is None else len(s)

    def users(self, name):
        """Consumers that compute something at run time (a Shape of a static tensor does not)."""
        return [n for n in self.consumers.get(name, []) if not all(self.value(o) is not None for o in n.output if o)]

    def only_consumer(self, name):
        users = self.users(name)
        return users[0] if len(users) == 1 and name not in self.outputs else None


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _einsum_letters(m, node):
    eq = _attr(node, "equation").replace(" ", "")
    lhs, out = eq.split("->")
    ops = lhs.split(",")
    _need(len(ops) == 2, "einsum of two operands")
    spare = iter(sorted(set("ABCDEFGHIJKLMNOPQRSTUVWXYZ") - set(eq)))
    ell = None
    expanded = []
    for term, name in zip(ops, node.input):
        if "..." in term:
            r = m.rank(name)
            _need(r is not None, "einsum ellipsis of unknown rank")
            n = r - (len(term) - 3)
            if ell is None or len(ell) < n:
                ell = (ell or "") + "".join(next(spare) for _ in range(n - len(ell or "")))
            term = term.replace("...", ell[len(ell) - n:])
        expanded.append(term)
    if "..." in out:
        out = out.replace("...", ell or "")
    return expanded[0], expanded[1], out


# --- the score ---------------------------------------------------------------------------------------
def _peel(m, name, used):
    """Strip monotone wrappers; returns (inner tensor, sign)."""
    sign = 1
    while True:
        n = m.producer.get(name)
        if n is None:
            return name, sign
        op = n.op_type
        if op == "Neg":
            sign = -sign
        elif op in ("Sqrt", "Relu"):
            pass
        elif op == "Clip":
            lo = m.value(n.input[1]) if len(n.input) > 1 and n.input[1] else _attr(n, "min")
            hi = m.value(n.input[2]) if len(n.input) > 2 and n.input[2] else _attr(n, "max")
            if hi is not None or (lo is not None and float(np.asarray(lo)) < 0):
                return name, sign
        elif op == "Pow":
            e = m.value(n.input[1])
            if e is None or e.size != 1 or float(e.reshape(-1)[0]) != 0.5:
                return name, sign
        else:
            return name, sign
        used.append(n)
        name = n.input[0]


def _terms(m, name, coef, out, used):
    """Collect name = sum of (kind, payload, coef) terms: 'core' Einsum/MatMul, 'const', 'row'."""
    v = m.value(name)
    if v is not None:
        out.append(("const", np.asarray(v, np.float64) * coef, None))
        return
    n = m.producer.get(name)
    op = n.op_type if n is not None else None
    if op in ("Add", "Sub"):
        used.append(n)
        _terms(m, n.input[0], coef, out, used)
        _terms(m, n.input[1], coef if op == "Add" else -coef, out, used)
    elif op == "Neg":
        used.append(n)
        _terms(m, n.input[0], -coef, out, used)
    elif op in ("Mul", "Div") and (m.value(n.input[1]) is not None or (op == "Mul" and m.value(n.input[0]) is not None)):
        const_first = m.value(n.input[1]) is None
        c = np.asarray(m.value(n.input[0] if const_first else n.input[1]), np.float64)
        used.append(n)
        _terms(m, n.input[1] if const_first else n.input[0], coef * (1.0 / c if op == "Div" else c), out, used)
    elif op in ("Einsum", "MatMul") and sum(m.value(i) is not None for i in n.input) == 1:
        used.append(n)
        out.append(("core", n, coef))
    else:
        out.append(("row", name, coef))


class Core:
    """The bilinear score core: query letters, score letters, codebook [G, K, d] (G=1 if ungrouped)."""

    def __init__(self, m, node):
        self.node = node
        if node.op_type == "MatMul":
            a, b = node.input
            W = m.value(b)
            _need(W is not None and W.ndim == 2, "MatMul core with a 2-d constant right operand")
            r = m.rank(a)
            _need(r is not None, "MatMul query of unknown rank")
            rows = "abcdefgh"[:r - 1]
            self.q, self.lq, self.lo, self.group, self.d, self.code = a, rows + "z", rows + "y", None, "z", "y"
            self.C = np.asarray(W, np.float64).T[None]
            self.dtype = W.dtype
            return
        lq, lc, lo = _einsum_letters(m, node)
        known = [m.value(i) is not None for i in node.input]
        if known[0]:
            lq, lc = lc, lq
        self.q = node.input[1] if known[0] else node.input[0]
        Cst = m.value(node.input[0] if known[0] else node.input[1])
        self.dtype = Cst.dtype
        code = lo[-1]
        _need(code in lc and code not in lq, "the selection axis is a code axis of the constant")
        dims = [c for c in lc if c in lq and c not in lo]
        groups = [c for c in lc if c in lq and c in lo]
        _need(len(dims) == 1 and len(groups) <= 1 and len(lc) == 2 + len(groups) and len(set(lc)) == len(lc),
              "einsum core of a [groups?, codes, dim] constant")
        self.lq, self.lo, self.d, self.code = lq, lo, dims[0], code
        self.group = groups[0] if groups else None
        order = ([self.group] if self.group else []) + [code, self.d]
        C = np.transpose(np.asarray(Cst, np.float64), [lc.index(c) for c in order])
        self.C = C if self.group else C[None]
        _need(all(c in lo for c in lq if c not in (self.d,)), "query rows appear in the score")

    def per_code(self, value):
        """Broadcast a coefficient aligned with the score tensor to [G, K] (None if it varies per row)."""
        G, K, _ = self.C.shape
        template = [G if c == self.group else K if c == self.code else 1 for c in self.lo]
        try:
            full = np.broadcast_to(np.asarray(value, np.float64), template)
        except ValueError:
            raise NoMatch("a score term varies along the rows") from None
        keep = [self.lo.index(c) for c in ([self.group] if self.group else []) + [self.code]]
        full = full.transpose(keep + [i for i in range(len(self.lo)) if i not in keep])
        return full.reshape(full.shape[:len(keep)] + (-1,))[..., 0].reshape(G, K)


def score(m, sel, used, kv=False):
    """(core, metric, maximise-sense checked) for the selection node's score input."""
    inner, sign = _peel(m, sel.input[0], used)
    terms = []
    _terms(m, inner, np.float64(1.0), terms, used)
    cores = [t for t in terms if t[0] == "core"]
    _need(len(cores) == 1, "exactly one bilinear core in the score")
    core = Core(m, cores[0][1])
    for kind, payload, coef in terms:
        if kind == "row":
            shape = m.shape(payload)
            _need(shape is not None and len(shape) <= len(core.lo) and (not shape or shape[-1] == 1)
                  and np.asarray(coef).reshape(-1).size == 1, "per-row terms are constant along the codes")
    s = sign * (1 if sel.maximise else -1)
    w = s * core.per_code(cores[0][2])
    a = s * sum((core.per_code(p) for k, p, _ in terms if k == "const"), np.zeros(core.C.shape[:2]))
    n2 = (core.C ** 2).sum(-1)
    tol = 1e-5

    def per_group_const(v, scale):  # equal within each group, to float32 rounding of the folded constants
        return np.allclose(v, v[:, :1], rtol=0, atol=tol * (np.abs(scale).max() + 1e-30))

    if (w > 0).all() and per_group_const(a, np.abs(w) * n2 + np.abs(a)):
        if per_group_const(w, w):
            return core, "dot"
        if per_group_const(w * np.sqrt(n2), w * np.sqrt(n2)) and not kv:
            return core, "inner_product"
    if (w > 0).all() and per_group_const(w, w) and per_group_const(a + 0.5 * w * n2, np.abs(a) + w * n2):
        return core, "sqeuclidean" if kv else "euclidean"
    raise NoMatch("the score is not a cosine, Euclidean or dot ranking of the codebook")


# --- the selection and its two families --------------------------------------------------------------
class Selection:
    def __init__(self, m, node):
        self.node = node
        r = m.rank(node.input[0])
        _need(r is not None, "selection over a score of unknown rank")
        if node.op_type == "TopK":
            kv = m.value(node.input[1])
            _need(kv is not None, "TopK with a runtime k")
            self.k, self.maximise, self.idx, self.slot = int(kv.reshape(-1)[0]), bool(_attr(node, "largest", 1)), \
                node.output[1], True
            axis = _attr(node, "axis", -1)
            vals = node.output[0]
            _need(not vals or (not m.consumers.get(vals) and vals not in m.outputs), "TopK values are used")
        else:
            _need(not _attr(node, "select_last_index", 0), "select_last_index=1 breaks ties the other way")
            self.k, self.maximise, self.idx = 1, node.op_type == "ArgMax", node.output[0]
            self.slot = bool(_attr(node, "keepdims", 1))
            axis = _attr(node, "axis", 0)
        _need(axis % r == r - 1, "selection over the last axis")
        self.input = node.input


def _reduce_axes(m, node):
    if len(node.input) > 1 and node.input[1]:
        v = m.value(node.input[1])
        _need(v is not None, "reduction axes known")
        return [int(a) for a in v.reshape(-1)]
    return list(_attr(node, "axes", []))


def _layernorm_query(m, core):
    """(x tensor, needs_reshape, gamma [G, dg], beta [G, dg], eps) or x=query, no LN."""
    G, _, dg = core.C.shape
    name = core.q
    gamma, beta = np.ones((G, dg)), np.zeros((G, dg))
    # query = T * gamma + beta, peeling from the outside in (upstream nodes are left for dead-code removal)
    for op in ("Add", "Mul"):
        n = m.producer.get(name)
        if n is not None and n.op_type == op:
            const = [i for i in n.input if m.value(i) is not None]
            if len(const) == 1:
                v = np.broadcast_to(np.asarray(m.value(const[0]), np.float64).reshape(-1, dg), (G, dg))
                if op == "Add":
                    beta = beta + v * gamma
                else:
                    gamma = gamma * v
                name = n.input[0] if n.input[1] == const[0] else n.input[1]
    n = m.producer.get(name)
    if n is None or n.op_type != "LayerNormalization":
        return core.q, core.group is not None, None, None, None
    _need(_attr(n, "axis", -1) in (-1, len(core.lq) - 1) and not any(n.output[1:]), "LayerNormalization over dim")
    s = m.value(n.input[1]) if len(n.input) > 1 and n.input[1] else np.ones(dg)
    b = m.value(n.input[2]) if len(n.input) > 2 and n.input[2] else np.zeros(dg)
    _need(s is not None and b is not None, "LayerNormalization scale/bias are constants")
    s = np.broadcast_to(np.asarray(s, np.float64).reshape(-1, dg), (G, dg))
    b = np.broadcast_to(np.asarray(b, np.float64).reshape(-1, dg), (G, dg))
    gamma, beta = s * gamma, b * gamma + beta  # T = LN0 * s + b
    x = n.input[0]
    r = m.producer.get(x)
    if r is not None and r.op_type == "Reshape" and core.group is not None and m.rank(r.input[0]) == len(core.lq) - 1:
        return r.input[0], False, gamma, beta, float(_attr(n, "epsilon", 1e-5))
    return x, core.group is not None, gamma, beta, float(_attr(n, "epsilon", 1e-5))


def match_cf(m, sel, core, metric, used):
    G, K, dg = core.C.shape
    _need(core.lq[-1] == core.d and (core.group is None or core.lq[-2] == core.group), "query layout [..., G, dg]")
    rows = len(core.lq) - 1 - (core.group is not None)
    chain = [u for u in m.users(sel.idx) if u.op_type in ("Add", "Gather")]
    _need(len(chain) == 1, "the ids feed one Gather")
    u, index = chain[0], sel.idx
    if u.op_type == "Add":
        _need(sum(m.value(i) is not None for i in u.input) == 1, "group offsets are constants")
        used.append(u)
        index = u.output[0]
        u = m.only_consumer(index)
        _need(u is not None and u.op_type == "Gather", "the offset ids feed a Gather")
        want = core.C.reshape(G * K, dg)
    else:
        _need(G == 1, "ungrouped Gather")
        want = core.C[0]
    data = m.value(u.input[0])
    _need(data is not None and u.input[1] == index and _attr(u, "axis", 0) == 0, "Gather rows of a constant")
    _need(data.shape == want.shape and np.array_equal(np.asarray(data, np.float64), want), "Gather of the scored codes")
    used.append(u)
    out, reduce, keep = u.output[0], "mean", 0
    if sel.slot:
        r = m.only_consumer(out)
        _need(r is not None and r.op_type in ("ReduceMean", "ReduceSum"), "a mean over the k selected codes")
        rank = m.rank(out)
        _need(rank is not None and [a % rank for a in _reduce_axes(m, r)] == [rank - 2], "reduction over the slots")
        keep, out = int(_attr(r, "keepdims", 1)), r.output[0]
        used.append(r)
        reduce = "mean" if r.op_type == "ReduceMean" else "sum"
        d = m.only_consumer(out)
        if reduce == "sum" and d is not None and d.op_type == "Div" and d.input[0] == out:
            kval = m.value(d.input[1])
            if kval is not None and kval.size == 1 and float(kval.reshape(-1)[0]) == sel.k:
                used.append(d)
                out, reduce = d.output[0], "mean"
    x, reshape_x, gamma, beta, eps = _layernorm_query(m, core)
    tail = ([G] if core.group else []) + ([1] if keep else []) + [dg]
    id_tail = ([G] if core.group else []) + ([sel.k] if sel.slot else [])
    attrs = {"k": sel.k, "metric": metric, "num_groups": G, "reduce": reduce,
             "pre_norm": "layernorm" if gamma is not None else "none"}
    if gamma is not None:
        attrs["ln_epsilon"] = eps
    consts = [("codebook", core.C.astype(core.dtype))]
    if gamma is not None:
        consts += [("ln_scale", gamma.astype(np.float32)), ("ln_bias", beta.astype(np.float32))]
    return {"kind": "CodebookSnap", "x": x, "reshape_x": reshape_x, "rows": rows, "out": out, "tail": tail,
            "id_tail": id_tail, "consts": consts, "attrs": attrs}


def match_kv(m, sel, core, metric, used):
    G, K, dk = core.C.shape
    _need(core.group is not None and sel.k == 1, "one nearest key per head")
    lo = [c for c in core.lo if c != core.code]
    _need(len(lo) == 2 and lo[0] == core.group, "score layout [heads, rows, keys]")
    t, chain = sel.idx, []
    while True:
        u = m.only_consumer(t)
        _need(u is not None, "the ids feed one chain")
        if u.op_type in ("Unsqueeze", "Reshape", "Expand") and u.input[0] == t:
            chain.append(u)
            t = u.output[0]
            continue
        break
    V = m.value(u.input[0])
    _need(u.op_type == "GatherElements" and u.input[1] == t and _attr(u, "axis", 0) == 1, "GatherElements of values")
    _need(V is not None and V.ndim == 3 and V.shape[:2] == (G, K), "values [heads, keys, dv]")
    used.extend(chain + [u])
    labels, name = list(core.lq), core.q
    while (n := m.producer.get(name)) is not None and n.op_type == "Transpose":
        perm = _attr(n, "perm")
        before = [None] * len(labels)
        for i, p in enumerate(perm):
            before[p] = labels[i]
        labels, name = before, n.input[0]
    n = m.producer.get(name)
    _need(n is not None and n.op_type == "Einsum", "projection Einsum")
    lz, lp, lout = _einsum_letters(m, n)
    if m.value(n.input[0]) is not None:
        lz, lp = lp, lz
    z, P = (n.input[1], m.value(n.input[0])) if m.value(n.input[0]) is not None else (n.input[0], m.value(n.input[1]))
    _need(P is not None and P.ndim == 3 and len(lout) == len(labels), "a constant [C, D, dk] projection")
    to_core = dict(zip(lout, labels))
    head = [c for c in lp if to_core.get(c) == core.group]
    dkl = [c for c in lp if to_core.get(c) == core.d]
    contracted = [c for c in lp if c in lz and c not in lout]
    _need(len(head) == len(dkl) == len(contracted) == 1 and len(lz) == 2 and lz[-1] == contracted[0],
          "projection letters")
    Pir = np.transpose(P, [lp.index(head[0]), lp.index(contracted[0]), lp.index(dkl[0])])
    _need(Pir.shape[0] == G and Pir.shape[2] == dk, "projection matches the keys")
    return {"kind": "KeyValueLookup", "x": z, "out": u.output[0],
            "consts": [("keys", core.C.astype(core.dtype)), ("values", V), ("proj", Pir)],
            "attrs": {"topk": 1, "metric": metric, "split": "projection", "combine": "none"}}
