"""Summarise py-spy's raw (collapsed) output: per process and thread (``--subprocesses
--threads``: the innermost ``process ...`` frame, then the ``thread ...`` frame), the samples,
the share of them whose stack contains each function (inclusive) and the top leaf frames.
Without ``--idle`` a sample means the thread was on the CPU: samples / (rate x seconds) is how
busy it was.

    python benchmarks/gpu/pyspy_summary.py serve05b.pyspy.txt [--top 25] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import re


def frame_name(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    m = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    return f"{m.group(1)} ({m.group(2).rsplit('/', 1)[-1]})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    incl: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    leaf: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    total: collections.Counter = collections.Counter()
    with open(args.path) as f:
        lines = f.readlines()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        start = max((i for i, f in enumerate(frames) if f.startswith("process ")), default=0)
        key = frames[start][:100]
        rest = frames[start + 1:]
        if rest and rest[0].startswith("thread "):
            key, rest = f"{key} / {rest[0]}", rest[1:]
        proc = key
        n = int(count)
        total[proc] += n
        names = [frame_name(f) for f in rest]
        for name in set(names):
            incl[proc][name] += n
        if names:
            leaf[proc][names[-1]] += n
    out = {}
    for proc, n in total.most_common():
        out[proc] = {"samples": n,
                     "inclusive": [(f, round(c / n, 4)) for f, c in incl[proc].most_common(args.top)],
                     "leaf": [(f, round(c / n, 4)) for f, c in leaf[proc].most_common(args.top)]}
        print(f"== {proc}: {n} samples")
        print("  inclusive:")
        for f, share in out[proc]["inclusive"]:
            print(f"    {share:6.1%}  {f}")
        print("  leaf:")
        for f, share in out[proc]["leaf"]:
            print(f"    {share:6.1%}  {f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
