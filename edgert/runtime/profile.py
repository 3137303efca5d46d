"""Per-node profile of a prepared session: where the time goes, kernel by kernel.

``profile_session`` runs the session's steps one at a time under a timer (the same kernels on the
same arena views as ``Session.run``), repeats the whole model ``runs`` times and keeps the median
per node, so one slow outlier does not decide the ranking. The sum of the per-node medians is
compared with the median of whole runs: the difference is the executor's own overhead (Python
dispatch between kernels, feeding inputs, copying outputs).

``chrome_trace`` turns one profiled run into the Trace Event Format that chrome://tracing and
https://ui.perfetto.dev open.
"""

from __future__ import annotations

import json
import time

import numpy as np

from ..fileio import atomic_write
from .bench import random_feeds


def _node_flops(sess, pnode) -> float:
    """Multiply-adds x 2 for the ops where that is the work measure (conv, FC, MatMul); else 0."""
    op, g = pnode.node.op, sess.graph
    out = sess.tensor_info(pnode.node.outputs[0]).shape
    if op in ("Conv", "ConvTranspose") and len(pnode.node.inputs) > 1 and pnode.node.inputs[1] in g.consts:
        w = g.consts[pnode.node.inputs[1]].shape
        if op == "Conv":  # every output element: Cin/g * kh * kw multiply-adds
            return 2.0 * float(np.prod(out)) * float(np.prod(w[1:]))
        # ConvTranspose [Cin, Cout/g, kh, kw]: every input element scatters Cout/g * kh * kw of them
        return 2.0 * float(np.prod(sess.tensor_info(pnode.node.inputs[0]).shape)) * float(np.prod(w[1:]))
    if op in ("FullyConnected", "MatMul"):
        k = sess.tensor_info(pnode.node.inputs[0]).shape[-1]
        return 2.0 * float(np.prod(out)) * k
    return 0.0


def profile_session(sess, feeds=None, runs: int = 20, warmup: int = 3) -> dict:
    """Median time per node over ``runs`` whole-model passes, plus the whole-run median."""
    feeds = feeds if feeds is not None else random_feeds(sess)
    nodes = [p for p in sess.nodes if p.prepared is not None]
    assert len(nodes) == len(sess.steps)
    for _ in range(warmup):
        sess.run(feeds)
    per_node = np.zeros((runs, len(nodes)))
    whole = np.zeros(runs)
    starts = np.zeros(len(nodes))
    with sess._lock:
        sess._set_threads()
        for r in range(runs):
            t_run = time.perf_counter()
            sess._feed(feeds)
            for i, (fn, args) in enumerate(sess.steps):
                t0 = time.perf_counter()
                fn(*args)
                per_node[r, i] = time.perf_counter() - t0
                if r == runs - 1:
                    starts[i] = t0 - t_run
            whole[r] = time.perf_counter() - t_run
    med = np.median(per_node, axis=0) * 1e3
    rows = []
    for i, p in enumerate(nodes):
        flops = _node_flops(sess, p)
        rows.append({"index": i, "name": p.node.name, "op": p.node.op, "kernel": p.prepared.kernel,
                     "shape": list(sess.tensor_info(p.node.outputs[0]).shape), "median_ms": float(med[i]),
                     "gflops": float(flops / (med[i] * 1e6)) if flops and med[i] > 0 else None,
                     "last_start_ms": float(starts[i] * 1e3), "last_ms": float(per_node[-1, i] * 1e3)})
    whole_ms = float(np.median(whole) * 1e3)
    run_ms = [float(x) for x in np.sort(whole * 1e3)]
    timed = float(med.sum())
    return {"threads": sess.threads, "runs": runs, "whole_run_median_ms": whole_ms,
            "sum_of_node_medians_ms": timed, "overhead_ms": max(whole_ms - timed, 0.0),
            "run_ms": run_ms, "nodes": rows}


def by_op(profile: dict) -> list:
    """[(op, kernel, count, total median ms)] sorted by time: which kinds of node cost most."""
    acc: dict = {}
    for n in profile["nodes"]:
        key = (n["op"], n["kernel"])
        count, ms = acc.get(key, (0, 0.0))
        acc[key] = (count + 1, ms + n["median_ms"])
    return sorted(((op, k, c, ms) for (op, k), (c, ms) in acc.items()), key=lambda r: -r[3])


def chrome_trace(profile: dict, path) -> None:
    """Write the last profiled run as a Chrome/Perfetto trace (one slice per node)."""
    events = [{"name": n["name"], "cat": n["op"], "ph": "X", "pid": 1, "tid": 1,
               "ts": n["last_start_ms"] * 1e3, "dur": max(n["last_ms"] * 1e3, 0.01),
               "args": {"kernel": n["kernel"], "shape": n["shape"], "median_ms": n["median_ms"]}}
              for n in profile["nodes"]]
    with atomic_write(path, "w") as fh:
        json.dump({"traceEvents": events, "displayTimeUnit": "ms"}, fh)
