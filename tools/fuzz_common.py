"""What the fuzzing tools share: run mutation batches in child processes, count outcomes, report.

A child runs ``child_code`` with argv [root, seed, n, work path] and prints one JSON line
{"counts": {...}, "bugs": {key: [mutation kind, traceback]}}. A child that dies (segfault, abort,
OOM kill) is counted as a crash and its stderr kept, so one hard failure never ends the run.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fuzz_arguments(description: str, iterations: int, seed: int) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--iterations", type=int, default=iterations)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seed", type=int, default=seed)
    ap.add_argument("--markdown", type=Path, default=None)
    return ap


def run_batches(child_code: str, args, work_name: str, header=()) -> int:
    """Run ``args.iterations`` mutations in batches; print and (with --markdown) write the report.
    Returns the exit status: 1 when anything unexpected happened."""
    t0 = time.time()
    counts, bugs, crashes = collections.Counter(), {}, 0
    with tempfile.TemporaryDirectory() as work:
        for b in range(0, args.iterations, args.batch):
            n = min(args.batch, args.iterations - b)
            proc = subprocess.run([sys.executable, "-c", child_code, str(ROOT), str(args.seed * 100003 + b), str(n),
                                   str(Path(work) / work_name)], capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                crashes += 1
                bugs.setdefault(f"child exited {proc.returncode}", ("?", proc.stderr[-800:]))
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            counts.update(result["counts"])
            bugs.update({k: tuple(v) for k, v in result["bugs"].items()})
            print(f"{b + n}/{args.iterations} inputs, {counts['BUG']} bugs, {crashes} crashes", file=sys.stderr,
                  flush=True)
    lines = [f"Command: `python {Path(sys.argv[0]).as_posix()} {' '.join(sys.argv[1:])}`", "", *header,
             f"{args.iterations} mutated files in {time.time() - t0:.0f} s; child crashes: {crashes}; "
             f"distinct unexpected exceptions: {len(bugs)}", "", "| outcome | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    for key, (kind, tb) in bugs.items():
        lines += ["", f"BUG ({kind}): {key}", "```", tb, "```"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    return 1 if bugs or crashes else 0
