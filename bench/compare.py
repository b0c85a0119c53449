"""The engine of bench/compare: runs blockwise-bench and bench/anchors/run
for each workload, scheduler and API, one process per run, and prints a
side-by-side table with ratios. Every number printed was measured in this
invocation; a run that fails or times out shows as such, never as a number.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# blockwise API -> the Dask API that builds the same graph the same way.
API_PAIRS = {"delayed": "delayed", "layers": "graph"}

TASK_WORKLOADS = ("tasks-tree", "tasks-flat", "graph-build")

# Collection workloads: every system that runs them, in the order they run
# (blockwise first: it writes the data files the anchors read). "ours" runs
# blockwise-bench with the extra arguments, "anchor" bench/anchors/run.
COLLECTION_SYSTEMS = {
    "array-mean": [("blockwise", "ours", []), ("rust-loop", "ours", ["--system", "rust-loop"]),
                   ("dask", "anchor", ["--system", "dask"]), ("numpy", "anchor", ["--system", "numpy"])],
    "array-sum-zarr": [("blockwise", "ours", []), ("dask", "anchor", ["--system", "dask"])],
    "matmul": [("blockwise", "ours", []), ("dask", "anchor", ["--system", "dask"]),
               ("numpy", "anchor", ["--system", "numpy"])],
    "bag-json": [("blockwise", "ours", []), ("dask", "anchor", ["--system", "dask"]),
                 ("python", "anchor", ["--system", "python"])],
    "wordcount": [("blockwise", "ours", []), ("rust-loop", "ours", ["--system", "rust-loop"]),
                  ("dask", "anchor", ["--system", "dask"]), ("python", "anchor", ["--system", "python"])],
}
for _w in ("csv-groupby", "join", "sort"):
    COLLECTION_SYSTEMS[_w] = [("blockwise", "ours", []), ("polars", "anchor", ["--system", "polars"]),
                              ("dask", "anchor", ["--system", "dask"]), ("pandas", "anchor", ["--system", "pandas"])]

# The --set options the anchors of each family understand (blockwise-bench
# gets every one).
ANCHOR_OPTIONS = {
    "array-mean": {"n", "chunk", "seed"}, "matmul": {"n", "chunk", "seed"}, "array-sum-zarr": {"dir"},
    "csv-groupby": {"dir"}, "join": {"dir"}, "sort": {"dir"}, "bag-json": {"dir"}, "wordcount": {"dir"},
}

# Results that do not depend on the system's random numbers: every system
# must agree with blockwise (to a relative 1e-6 for floats).
DETERMINISTIC = {"array-sum-zarr", "csv-groupby", "join", "sort", "bag-json", "wordcount"}


def build_blockwise():
    """Builds blockwise-bench (release) and returns the executable's path."""
    out = subprocess.run(
        ["cargo", "build", "--release", "-p", "blockwise-bench", "--message-format=json"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
    ).stdout.decode()
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "blockwise-bench":
            if msg.get("executable"):
                return msg["executable"]
    sys.exit("compare: cargo did not report the blockwise-bench executable")


def run_one(cmd, timeout):
    """One process; returns (record or None, status text)."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timeout ({timeout:g} s)"
    lines = [l for l in p.stdout.decode().splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        err = p.stderr.decode().strip().splitlines()
        reason = err[-1] if err else f"exit code {p.returncode}"
        if p.returncode == 2 and "does not exist yet" in p.stderr.decode():
            reason = "not implemented"
        return None, reason
    return json.loads(lines[-1]), "ok"


def total_s(r):
    """build_s + wall_s of a collection record."""
    if r is None or r.get("wall_s") is None:
        return None
    return (r.get("build_s") or 0.0) + r["wall_s"]


def median_run(records):
    """The run with the median time (the lower middle for an even count)."""
    key = lambda r: r.get("wall_s") if r.get("wall_s") is not None else r.get("total_s", 0)
    ordered = sorted(records, key=key)
    return ordered[(len(ordered) - 1) // 2]


def fmt_s(x):
    if x is None:
        return "-"
    return f"{x:.3f}" if x >= 0.1 else f"{x * 1000:.1f}ms"


def fmt_rate(x):
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def fmt_mb(x):
    return "-" if x is None else f"{x / 2**20:.0f}"


def fmt_load(b, d):
    """The machine's 1-minute load when each side started."""
    f = lambda r: "-" if r is None or r.get("loadavg_1m") is None else f"{r['loadavg_1m']:.1f}"
    return f"{f(b)}/{f(d)}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.1f}x"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("workloads", nargs="+")
    ap.add_argument("--n", default="100000")
    ap.add_argument("--schedulers", default="threads,sync")
    ap.add_argument("--apis", default="delayed,layers")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--jsonl", help="append every raw JSON line to this file")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="collection workloads: pass --KEY VALUE to blockwise-bench (and to the anchors that take it)")
    ap.add_argument("--systems", help="collection workloads: only these systems (comma-separated)")
    ap.add_argument("--exe", help="run this blockwise-bench executable instead of building one")
    args = ap.parse_args()
    unknown = [w for w in args.workloads if w not in TASK_WORKLOADS and w not in COLLECTION_SYSTEMS]
    if unknown:
        ap.error(f"unknown workloads {unknown}; known: {', '.join(TASK_WORKLOADS + tuple(COLLECTION_SYSTEMS))}")
    settings = []
    for item in args.set:
        if "=" not in item:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        settings.append(tuple(item.split("=", 1)))

    exe = args.exe or build_blockwise()
    anchors = os.path.join(HERE, "anchors", "run")
    raw = open(args.jsonl, "a") if args.jsonl else None
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().strip()
    print(f"# {started}  {platform.node()}  {os.cpu_count()} cores  load {os.getloadavg()[0]:.2f}  commit {commit or '?'}  {'n=' + args.n + '  ' if any(w in TASK_WORKLOADS for w in args.workloads) else ''}repeat={args.repeat}")

    rows = []
    collection_rows = {}
    for workload in args.workloads:
        if workload in COLLECTION_SYSTEMS:
            collection_rows[workload] = run_collection(workload, exe, anchors, settings, args, raw)
            continue
        schedulers = ["threads"] if workload == "graph-build" else args.schedulers.split(",")
        for scheduler in schedulers:
            for api in args.apis.split(","):
                sides = {}
                for system, cmd in (
                    ("blockwise", [exe, workload, "--scheduler", scheduler, "--n", args.n, "--api", api]),
                    ("dask", [anchors, workload, "--scheduler", scheduler, "--n", args.n, "--api", API_PAIRS[api]]),
                ):
                    records, status = [], "ok"
                    for _ in range(args.repeat):
                        rec, status = run_one(cmd, args.timeout)
                        if rec is None:
                            break
                        records.append(rec)
                        if raw:
                            raw.write(json.dumps(rec) + "\n")
                            raw.flush()
                    sides[system] = (median_run(records) if status == "ok" else None, status)
                    print(f"  {workload:<12} {scheduler:<11} {system:<9} api={api:<8} {status}", file=sys.stderr)
                rows.append((workload, scheduler, api, sides))

    for workload in args.workloads:
        if workload in collection_rows:
            print_collection(workload, collection_rows[workload])
            continue
        mine = [r for r in rows if r[0] == workload]
        if workload == "graph-build":
            print_graph_build(mine)
        else:
            print_tasks(mine)


def run_collection(workload, exe, anchors, settings, args, raw):
    """Runs every system of a collection workload; [(system, record, status)]."""
    wanted = set(args.systems.split(",")) if args.systems else None
    out = []
    for system, side, extra in COLLECTION_SYSTEMS[workload]:
        if wanted is not None and system not in wanted and system != "blockwise":
            continue
        if side == "ours":
            opts = [a for k, v in settings for a in ("--" + k, v)]
            cmd = [exe, workload, *opts, *extra]
        else:
            opts = [a for k, v in settings if k in ANCHOR_OPTIONS[workload] for a in ("--" + k, v)]
            cmd = [anchors, workload, *opts, *extra]
        records, status = [], "ok"
        for _ in range(args.repeat):
            rec, status = run_one(cmd, args.timeout)
            if rec is None:
                break
            records.append(rec)
            if raw:
                raw.write(json.dumps(rec) + "\n")
                raw.flush()
        best = median_run(records) if status == "ok" else None
        print(f"  {workload:<14} {system:<9} {status}", file=sys.stderr)
        out.append((system, best, status))
    return out


def same_result(a, b):
    """Whether two results agree (floats to a relative 1e-6)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1.0)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_result(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        # Top-k lists: ties may be listed in another order.
        if len(a) != len(b):
            return False
        if all(isinstance(x, list) and len(x) == 2 for x in a + b):
            return sorted(map(tuple, a)) == sorted(map(tuple, b))
        return all(same_result(x, y) for x, y in zip(a, b))
    return a == b


def fmt_result(workload, r, ours):
    if r is None:
        return "-"
    res = r.get("result")
    if workload in DETERMINISTIC:
        if ours is None:
            return "checked"
        return "same" if same_result(res, ours.get("result")) else "DIFFERS"
    return f"{res:.6g}" if isinstance(res, (int, float)) else "checked"


def print_collection(workload, rows):
    ours = next((r for s, r, _ in rows if s == "blockwise"), None)
    head = ("workload", "system", "scheduler", "build", "wall", "total", "vs blockwise", "peak MB",
            "mem vs blockwise", "result", "load")
    table = [head]
    for system, r, status in rows:
        if r is None:
            table.append((workload, system, "-", status, status, status, "-", "-", "-", "-", "-"))
            continue
        g = r.get
        table.append((
            workload, system, str(g("scheduler")) + (f":{g('workers')}" if g("workers") else ""),
            fmt_s(g("build_s")), fmt_s(g("wall_s")), fmt_s(total_s(r)),
            "-" if r is ours else ratio(total_s(r), total_s(ours)),
            fmt_mb(g("peak_rss_bytes")),
            "-" if r is ours else ratio(g("peak_rss_bytes"), ours.get("peak_rss_bytes") if ours else None),
            fmt_result(workload, r, None if r is ours else ours),
            "-" if g("loadavg_1m") is None else f"{g('loadavg_1m'):.1f}",
        ))
    print_table(table)
    print("  vs blockwise: the system's total time (build + wall) over blockwise's (above 1x: blockwise is faster);")
    print("  mem vs blockwise: its peak RSS over blockwise's. result: every run checks its own result;")
    print("  'same' = equal to blockwise's. load = 1-minute load average when the run started.")
    print()


def print_tasks(rows):
    head = ("workload", "scheduler", "api (ours/dask)", "tasks", "build ours", "build dask",
            "wall ours", "wall dask", "speedup", "tasks/s ours", "tasks/s dask", "peak MB ours", "peak MB dask", "mem ratio", "load ours/dask")
    table = [head]
    for workload, scheduler, api, sides in rows:
        (b, bs), (d, ds) = sides["blockwise"], sides["dask"]
        g = lambda r, k: None if r is None else r.get(k)
        table.append((
            workload, scheduler, f"{api}/{API_PAIRS[api]}",
            str(g(b, "tasks") or g(d, "tasks") or "-"),
            fmt_s(g(b, "build_s")) if b else bs, fmt_s(g(d, "build_s")) if d else ds,
            fmt_s(g(b, "wall_s")) if b else bs, fmt_s(g(d, "wall_s")) if d else ds,
            ratio(g(d, "wall_s"), g(b, "wall_s")),
            fmt_rate(g(b, "tasks_per_s")), fmt_rate(g(d, "tasks_per_s")),
            fmt_mb(g(b, "peak_rss_bytes")), fmt_mb(g(d, "peak_rss_bytes")),
            ratio(g(d, "peak_rss_bytes"), g(b, "peak_rss_bytes")),
            fmt_load(b, d),
        ))
    print_table(table)


def print_graph_build(rows):
    head = ("workload", "api (ours/dask)", "tasks", "build ours", "build dask", "cull ours", "cull dask",
            "order ours", "order dask", "total ours", "total dask", "speedup", "B/task ours", "B/task dask", "load ours/dask")
    table = [head]
    for workload, _, api, sides in rows:
        (b, bs), (d, ds) = sides["blockwise"], sides["dask"]
        g = lambda r, k: None if r is None else r.get(k)
        table.append((
            workload, f"{api}/{API_PAIRS[api]}", str(g(b, "tasks") or g(d, "tasks") or "-"),
            fmt_s(g(b, "build_s")) if b else bs, fmt_s(g(d, "build_s")) if d else ds,
            fmt_s(g(b, "cull_s")), fmt_s(g(d, "cull_s")),
            fmt_s(g(b, "order_s")), fmt_s(g(d, "order_s")),
            fmt_s(g(b, "total_s")), fmt_s(g(d, "total_s")),
            ratio(g(d, "total_s"), g(b, "total_s")),
            str(g(b, "bytes_per_task")) if b else "-", str(g(d, "bytes_per_task")) if d else "-",
            fmt_load(b, d),
        ))
    print_table(table)


def print_table(table):
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    for k, row in enumerate(table):
        print("  ".join(str(c).rjust(w) if i >= 3 else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print()


if __name__ == "__main__":
    main()
