"""Latency measurement shared by ``edgert bench`` and the tools/ benchmark scripts."""

from __future__ import annotations

import resource
import sys
import time

import numpy as np

from .session import load


def peak_rss_mib() -> float:
    """Peak resident memory of this process. VmHWM first: ru_maxrss survives exec on Linux, so a
    child started from a big parent would report the parent's peak."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024


def time_calls(fn, runs: int = 50, warmup: int = 5, min_seconds: float = 1.0):
    """Call ``fn`` ``warmup`` times, then at least ``runs`` times and ``min_seconds``; return times in ms."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) > 100000:
            break
    return np.array(times)


def random_feeds(sess, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {s.name: rng.random(s.shape).astype(s.dtype) for s in sess.inputs}


def bench_model(path, threads=None, board=None, runs=50, warmup=5, memory_budget=None) -> dict:
    t0 = time.perf_counter()
    sess = load(path, threads=threads, board=board, memory_budget=memory_budget)
    load_ms = (time.perf_counter() - t0) * 1e3
    feeds = random_feeds(sess)
    t0 = time.perf_counter()
    sess.run(feeds)
    first_ms = (time.perf_counter() - t0) * 1e3
    times = time_calls(lambda: sess.run(feeds), runs=runs, warmup=warmup)
    return {
        "model": str(path), "threads": sess.threads, "load_ms": load_ms, "first_run_ms": first_ms,
        "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
        "min_ms": float(times.min()), "runs": int(times.size), "peak_rss_mib": peak_rss_mib(),
        "arena_bytes": sess.plan.arena_bytes, "lower_bound_bytes": sess.plan.lower_bound,
        "compiled": {how: sess.compiled.count(how) for how in ("aot", "jit", "python")},
    }
