"""Anchors of blockwise-bench's bag workloads: Dask bag (its default
scheduler, a process pool) and plain single-process Python, on the files
blockwise-bench writes (run it first).

    bench/anchors/run bag-json  --system dask|python [--dir /tmp/blockwise-bench/accounts]
    bench/anchors/run wordcount --system dask|python [--dir /tmp/blockwise-bench/text]

- bag-json: DIR/accounts.*.json, json.loads, amount > 0, names,
  frequencies, top 10; result [[name, count], ...].
- wordcount: DIR/text_*.txt, split on whitespace, frequencies, top 100.

Results are checked against DIR/expected.json (counts written with the
data). peak_rss_bytes is this process's VmHWM; with Dask's process pool,
children_peak_rss_bytes is the largest worker's.
"""

import argparse
import collections
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import base_record, check_top, children_peak_rss, emit, load_expected, status_bytes, timer, versions  # noqa: E402


def by_count(pair):
    return pair[1]


def positive(record):
    return record["amount"] > 0


def bag_json(system, directory):
    pattern = os.path.join(directory, "accounts.*.json")
    if system == "dask":
        import dask.bag as db

        t0 = timer()
        q = db.read_text(pattern).map(json.loads).filter(positive).pluck("name").frequencies().topk(10, key=by_count)
        build = timer() - t0
        t1 = timer()
        top = q.compute()
        wall = timer() - t1
    else:
        t0 = timer()
        counts = collections.Counter()
        for path in sorted(glob.glob(pattern)):
            with open(path) as f:
                for line in f:
                    record = json.loads(line)
                    if record["amount"] > 0:
                        counts[record["name"]] += 1
        top = counts.most_common(10)
        wall = timer() - t0
        build = 0.0
    return build, wall, [[k, n] for k, n in top]


def wordcount(system, directory):
    pattern = os.path.join(directory, "text_*.txt")
    if system == "dask":
        import dask.bag as db

        t0 = timer()
        q = db.read_text(pattern).str.split().flatten().frequencies().topk(100, key=by_count)
        build = timer() - t0
        t1 = timer()
        top = q.compute()
        wall = timer() - t1
    else:
        t0 = timer()
        counts = collections.Counter()
        for path in sorted(glob.glob(pattern)):
            with open(path) as f:
                for line in f:
                    counts.update(line.split())
        top = counts.most_common(100)
        wall = timer() - t0
        build = 0.0
    return build, wall, [[k, n] for k, n in top]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", choices=["bag-json", "wordcount"])
    ap.add_argument("--system", choices=["dask", "python"], default="dask")
    ap.add_argument("--scheduler", default="processes", choices=["processes"])
    ap.add_argument("--dir")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    if args.dir is None:
        args.dir = "/tmp/blockwise-bench/" + ("accounts" if args.workload == "bag-json" else "text")
    expected = load_expected(args.dir, f"blockwise-bench {args.workload} --dir {args.dir}")
    prefix, k = ("accounts.", 10) if args.workload == "bag-json" else ("text_", 100)
    paths = sorted(glob.glob(os.path.join(args.dir, prefix + "*")))
    nbytes = sum(os.path.getsize(p) for p in paths)
    for i in range(args.repeat):
        record = base_record(args.workload, args.system, "processes" if args.system == "dask" else "-",
                             os.cpu_count() if args.system == "dask" else 1, i)
        rss_before = status_bytes("VmRSS")
        run = bag_json if args.workload == "bag-json" else wordcount
        build, wall, top = run(args.system, args.dir)
        peak = status_bytes("VmHWM")
        check_top(args.workload, expected["counts"], top, k)
        record.update(dir=args.dir, bytes=nbytes, build_s=round(build, 6), wall_s=round(wall, 6),
                      total_s=round(build + wall, 6), peak_rss_bytes=peak,
                      children_peak_rss_bytes=children_peak_rss() if args.system == "dask" else None,
                      rss_before_bytes=rss_before, result=top)
        if args.system == "dask":
            import dask

            versions(record, dask=dask)
        else:
            versions(record)
        emit(record)


if __name__ == "__main__":
    main()
