"""Helpers shared by the anchors of the collection workloads (arrays.py,
frames.py, bags.py; not array.py: that would shadow the standard module): memory readings, the common record fields, result
checks. Every anchor prints one JSON line per run with the same fields as
blockwise-bench (see bench/README.md) and exits 1 on a wrong result,
printing nothing for it.
"""

import gc
import json
import os
import platform
import resource
import sys
import time


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


def children_peak_rss():
    """The largest VmHWM among finished child processes (Dask's process
    pool), in bytes; None when there were none."""
    kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return kb * 1024 if kb else None


def count(text):
    """A whole number, with _ separators or as 1e6."""
    text = text.replace("_", "")
    return int(float(text)) if "e" in text.lower() else int(text)


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


def close(a, b, rel):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1.0)


def base_record(workload, system, scheduler, workers, run):
    gc.collect()
    reset_peak_rss()
    return {
        "workload": workload,
        "system": system,
        "scheduler": scheduler,
        "workers": workers,
        "run": run,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def versions(record, **modules):
    for name, module in modules.items():
        record[f"{name}_version"] = module.__version__
    record["python"] = platform.python_version()
    return record


def emit(record):
    print(json.dumps(record), flush=True)


def timer():
    return time.perf_counter()


def load_expected(directory, hint):
    """DIR/expected.json, written by blockwise-bench with the data files."""
    path = os.path.join(directory, "expected.json")
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        fail(f"{path} is missing: run `{hint}` first (it writes the data and what the results must be)")


def check_top(what, counts, top, k):
    """The same check as blockwise-bench's: each listed key with its true
    count, non-increasing, no better key left out."""
    want = min(k, len(counts))
    if len(top) != want:
        fail(f"{what}: {len(top)} entries, expected {want}")
    for key, n in top:
        if counts.get(key) != n:
            fail(f"{what}: {key!r} has count {n}, expected {counts.get(key)}")
    if any(a[1] < b[1] for a, b in zip(top, top[1:])):
        fail(f"{what}: the counts are not in decreasing order")
    if top:
        listed = {key for key, _ in top}
        smallest = top[-1][1]
        for key, c in counts.items():
            if c > smallest and key not in listed:
                fail(f"{what}: {key!r} (count {c}) is missing from the top {k}")


def dask_scheduler(name):
    """The keyword arguments of `dask.compute` for `--scheduler name`, and
    the number of workers. `distributed` starts a LocalCluster of 2 worker
    processes with one thread each (as `blockwise-bench --scheduler
    distributed` does) and makes its Client the default; the cluster lives
    as long as this process."""
    if name == "threads":
        return {"scheduler": "threads"}, os.cpu_count()
    if name != "distributed":
        fail(f"unknown scheduler {name}")
    global _CLIENT
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    _CLIENT = Client(cluster)
    _CLIENT.wait_for_workers(2)
    return {}, 2


_CLIENT = None
