"""Dask anchors of blockwise-bench's scheduler-overhead workloads.

    bench/anchors/run tasks-tree --scheduler threads --n 100000

Same workloads, same JSON fields as `blockwise-bench` (see bench/README.md),
with "system": "dask". Two ways to build the graph (--api, reported in "api"):

- delayed (default): dask.delayed calls, as a Dask user writes them;
  "api": "dask.delayed".
- graph: a plain task-graph dict ({key: (func, *args)}, Dask's "custom
  graphs"), computed with the scheduler's get (dask.threaded.get, dask.get,
  Client.get); "api": "dask.graph". This is the counterpart of blockwise's
  generated layers: no per-call collection objects.

Workloads:

- tasks-tree: inc(i) for i in range(n), summed in a tree of fan-in 100 with
  dask.delayed; result n(n+1)/2.
- tasks-flat: the same n tasks and one final sum of all of them.
- graph-build: build the tasks-tree (or --shape flat) graph, then do what
  dask.compute does before it schedules (collections_to_expr, optimize,
  materialize the culled graph: cull_s) and dask.order.order (order_s);
  with --api graph, dask.optimization.cull and dask.order.order.

Schedulers: threads (dask's threaded scheduler, one thread per core), sync
(dask's synchronous scheduler), distributed (a LocalCluster of 2 worker
processes with one thread each, started before the clock starts).

One workload per process: peak_rss_bytes is this process's VmHWM (for
distributed it includes the scheduler, which LocalCluster runs in this
process; workers_peak_rss_bytes adds up the workers' own VmHWM). Cluster
start-up and a small warm-up computation happen before the clock starts.
"""

import argparse
import gc
import json
import os
import platform
import sys
import time

import dask
import dask.local
import dask.threaded
from dask import delayed


def inc(i):
    return i + 1


def total(xs):
    return sum(xs)


if __name__ == "__main__":
    # Refer to the task functions through this file's module name, so that
    # cluster workers import them (pickled by reference) instead of
    # receiving a by-value pickle of a __main__ function with every task.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from tasks import inc, total  # noqa: F811


def status_bytes(field):
    """A field of /proc/self/status given in kB (VmRSS, VmHWM), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def delta(before, after):
    if before is None or after is None:
        return None
    return after - before


def expected(n):
    return n * (n + 1) // 2


def task_count(n, fan_in):
    tasks, level = n, n
    while True:
        level = -(-level // fan_in)
        tasks += level
        if level <= 1:
            return tasks


def build(n, fan_in):
    """The graph, as a Dask user writes it."""
    level = [delayed(inc)(i) for i in range(n)]
    while True:
        level = [delayed(total)(level[j : j + fan_in]) for j in range(0, len(level), fan_in)]
        if len(level) == 1:
            return level[0]


def build_graph(n, fan_in):
    """The same graph as a task-graph dict, and its output key."""
    dsk = {("inc", i): (inc, i) for i in range(n)}
    names, level = [("inc", i) for i in range(n)], 0
    while True:
        level += 1
        name = f"total-{level}"
        sums = []
        for j in range(0, len(names), fan_in):
            key = (name, j // fan_in)
            dsk[key] = (total, list(names[j : j + fan_in]))
            sums.append(key)
        names = sums
        if len(names) == 1:
            return dsk, names[0]


def round6(seconds):
    return round(seconds, 6)


def run_tasks(args, fan_in, client):
    n = args.n
    tasks = task_count(n, fan_in)
    rss_before = status_bytes("VmRSS")
    t0 = time.perf_counter()
    if args.api == "delayed":
        x = build(n, fan_in)
    else:
        dsk, out = build_graph(n, fan_in)
    build_s = time.perf_counter() - t0
    rss_graph = status_bytes("VmRSS")
    if args.api == "delayed":
        scheduler = client if client is not None else args.scheduler
        t1 = time.perf_counter()
        (result,) = dask.compute(x, scheduler=scheduler)
        wall_s = time.perf_counter() - t1
    else:
        get = client.get if client is not None else {"threads": dask.threaded.get, "sync": dask.local.get_sync}[args.scheduler]
        t1 = time.perf_counter()
        result = get(dsk, out)
        wall_s = time.perf_counter() - t1
    peak = status_bytes("VmHWM")
    if result != expected(n):
        sys.exit(f"{args.workload}: got {result}, expected {expected(n)} = n(n+1)/2 for n = {n}")
    record = {"n": n}
    if args.workload == "tasks-tree":
        record["fan_in"] = fan_in
    record.update(
        tasks=tasks,
        build_s=round6(build_s),
        wall_s=round6(wall_s),
        tasks_per_s=round(tasks / wall_s) if wall_s > 0 else None,
        peak_rss_bytes=peak,
        rss_before_bytes=rss_before,
        graph_rss_bytes=delta(rss_before, rss_graph),
        result=result,
    )
    return record


def graph_build(args, fan_in):
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr
    from dask.order import order

    n = args.n
    tasks = task_count(n, fan_in)
    rss_before = status_bytes("VmRSS")
    t0 = time.perf_counter()
    if args.api == "delayed":
        x = build(n, fan_in)
    else:
        raw, out = build_graph(n, fan_in)
    build_s = time.perf_counter() - t0
    rss_graph = status_bytes("VmRSS")
    t1 = time.perf_counter()
    if args.api == "delayed":
        expr = FinalizeCompute(collections_to_expr([x], optimize_graph=True)).optimize()
        dsk = dict(expr.__dask_graph__())
    else:
        from dask.optimization import cull

        dsk, _ = cull(raw, [out])
    cull_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    priorities = order(dsk)
    order_s = time.perf_counter() - t2
    rss_plan = status_bytes("VmRSS")
    peak = status_bytes("VmHWM")
    # With delayed, FinalizeCompute may add a task that gathers the output.
    planned = len(dsk)
    if len(priorities) != planned:
        sys.exit(f"graph-build: order ranked {len(priorities)} of {planned} tasks")
    per_task = lambda b: None if b is None else round(b / tasks)
    record = {"n": n, "shape": args.shape}
    if args.shape == "tree":
        record["fan_in"] = fan_in
    record.update(
        tasks=tasks,
        planned_tasks=planned,
        build_s=round6(build_s),
        plan_s=round6(cull_s + order_s),
        cull_s=round6(cull_s),
        order_s=round6(order_s),
        total_s=round6(build_s + cull_s + order_s),
        wall_s=None,
        bytes_per_task=per_task(delta(rss_before, rss_plan)),
        graph_bytes_per_task=per_task(delta(rss_before, rss_graph)),
        peak_rss_bytes=peak,
        rss_before_bytes=rss_before,
        result=None,
    )
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=["tasks-tree", "tasks-flat", "graph-build"])
    parser.add_argument("--scheduler", default="threads", choices=["threads", "sync", "distributed"])
    parser.add_argument("--n", type=lambda s: int(float(s)) if "e" in s.lower() else int(s.replace("_", "")), default=100_000)
    parser.add_argument("--fan-in", type=int, default=100)
    parser.add_argument("--shape", choices=["tree", "flat"], default="tree")
    parser.add_argument("--api", choices=["delayed", "graph"], default="delayed")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if args.n < 1 or args.fan_in < 2 or args.repeat < 1:
        parser.error("expected --n ≥ 1, --fan-in ≥ 2, --repeat ≥ 1")

    flat = args.workload == "tasks-flat" or (args.workload == "graph-build" and args.shape == "flat")
    fan_in = max(args.n, 1) if flat else args.fan_in

    cluster = client = None
    workers = os.cpu_count() if args.scheduler == "threads" else 1
    if args.scheduler == "distributed" and args.workload != "graph-build":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        client.wait_for_workers(2)
        # Warm-up outside the clock: workers import this module and unpickle
        # inc/total once, as they would in a long-running cluster.
        client.gather(client.map(inc, range(4)) + [client.submit(total, [1, 2])])
        workers = 2

    try:
        for run in range(args.repeat):
            gc.collect()
            reset_peak_rss()
            record = {
                "workload": args.workload,
                "system": "dask",
                "scheduler": args.scheduler,
                "workers": workers,
                "run": run,
                "api": "dask." + args.api,
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
            if args.workload == "graph-build":
                record.update(graph_build(args, fan_in))
            else:
                record.update(run_tasks(args, fan_in, client))
            if client is not None:
                peaks = client.run(status_bytes, "VmHWM")
                record["workers_peak_rss_bytes"] = sum(v for v in peaks.values() if v is not None)
            record["dask_version"] = dask.__version__
            record["python"] = platform.python_version()
            print(json.dumps(record), flush=True)
    finally:
        if client is not None:
            client.close()
            cluster.close()


if __name__ == "__main__":
    main()
