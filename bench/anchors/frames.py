"""Anchors of blockwise-bench's DataFrame workloads: Polars (lazy
scan_csv), Dask DataFrame (threaded scheduler) and pandas, on the CSV files
blockwise-bench writes (run it first: `blockwise-bench csv-groupby --dir DIR`).

    bench/anchors/run csv-groupby --system polars|dask|pandas [--dir /tmp/blockwise-bench/csv]
    bench/anchors/run join        --system polars|dask|pandas [--dir …]
    bench/anchors/run sort        --system polars|dask|pandas [--dir …]

- csv-groupby: DIR/data_*.csv grouped by category, mean of value; result
  maps category -> mean (checked against DIR/expected.json to 1e-9).
- join: data_*.csv (id, value) inner-joined on id with DIR/right.csv;
  result {rows, value_sum, weight_sum}.
- sort: data_*.csv sorted by value; result {rows, first, last, sorted}.

build_s is building the lazy query (Dask reads a sample of the files to
infer dtypes; 0 for pandas), wall_s running it; peak_rss_bytes is this
process's VmHWM.
"""

import argparse
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import base_record, close, dask_scheduler, emit, fail, load_expected, status_bytes, timer, versions  # noqa: E402

# `dask.compute`'s keyword arguments for the chosen scheduler (set in main).
COMPUTE = {"scheduler": "threads"}


def files(directory):
    found = sorted(glob.glob(os.path.join(directory, "data_*.csv")))
    if not found:
        fail(f"no data_*.csv in {directory}: run `blockwise-bench csv-groupby --dir {directory}` first")
    return found


def csv_groupby(system, directory):
    paths = files(directory)
    pattern = os.path.join(directory, "data_*.csv")
    if system == "polars":
        import polars as pl

        t0 = timer()
        q = pl.scan_csv(pattern).group_by("category").agg(pl.col("value").mean())
        build = timer() - t0
        t1 = timer()
        out = q.collect()
        wall = timer() - t1
        means = dict(zip(out["category"].to_list(), out["value"].to_list()))
    elif system == "dask":
        import dask
        import dask.dataframe as dd

        t0 = timer()
        q = dd.read_csv(pattern).groupby("category")["value"].mean()
        build = timer() - t0
        t1 = timer()
        (out,) = dask.compute(q, **COMPUTE)
        wall = timer() - t1
        means = {str(k): float(v) for k, v in out.items()}
    else:
        import pandas as pd

        t0 = timer()
        df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
        out = df.groupby("category")["value"].mean()
        wall = timer() - t0
        build = 0.0
        means = {str(k): float(v) for k, v in out.items()}
    return build, wall, means


def check_groupby(expected, means):
    want = {k: s / 100 / n for k, (n, s) in expected["groups"].items()}
    if set(means) != set(want):
        fail(f"csv-groupby: groups {sorted(means)[:5]}..., expected {sorted(want)[:5]}...")
    for k, w in want.items():
        if not close(means[k], w, 1e-9):
            fail(f"csv-groupby: mean of {k} is {means[k]}, expected {w}")


def join(system, directory):
    paths = files(directory)
    pattern = os.path.join(directory, "data_*.csv")
    right = os.path.join(directory, "right.csv")
    if system == "polars":
        import polars as pl

        t0 = timer()
        q = pl.scan_csv(pattern).select("id", "value").join(pl.scan_csv(right), on="id", how="inner")
        build = timer() - t0
        t1 = timer()
        out = q.collect()
        wall = timer() - t1
        rows, vs, ws = out.height, float(out["value"].sum()), float(out["weight"].sum())
    elif system == "dask":
        import dask
        import dask.dataframe as dd

        t0 = timer()
        q = dd.read_csv(pattern, usecols=["id", "value"]).merge(dd.read_csv(right), on="id", how="inner")
        build = timer() - t0
        t1 = timer()
        (out,) = dask.compute(q, scheduler="threads")
        wall = timer() - t1
        rows, vs, ws = len(out), float(out["value"].sum()), float(out["weight"].sum())
    else:
        import pandas as pd

        t0 = timer()
        left = pd.concat([pd.read_csv(p, usecols=["id", "value"]) for p in paths], ignore_index=True)
        out = left.merge(pd.read_csv(right), on="id", how="inner")
        wall = timer() - t0
        build = 0.0
        rows, vs, ws = len(out), float(out["value"].sum()), float(out["weight"].sum())
    return build, wall, {"rows": rows, "value_sum": vs, "weight_sum": ws}


def check_join(expected, result):
    want_v = expected["join_value_hundredths"] / 100
    if (result["rows"] != expected["join_rows"] or not close(result["value_sum"], want_v, 1e-9)
            or result["weight_sum"] != expected["join_weight_sum"]):
        fail(f"join: {result}; expected rows {expected['join_rows']}, value_sum {want_v}, "
             f"weight_sum {expected['join_weight_sum']}")


def sort(system, directory):
    paths = files(directory)
    pattern = os.path.join(directory, "data_*.csv")
    if system == "polars":
        import polars as pl

        t0 = timer()
        q = pl.scan_csv(pattern).sort("value")
        build = timer() - t0
        t1 = timer()
        out = q.collect()
        wall = timer() - t1
        values = out["value"].to_numpy()
        ids = out["id"].n_unique()
    elif system == "dask":
        import dask
        import dask.dataframe as dd

        t0 = timer()
        q = dd.read_csv(pattern).sort_values("value")
        build = timer() - t0
        t1 = timer()
        (out,) = dask.compute(q, scheduler="threads")
        wall = timer() - t1
        values = out["value"].to_numpy()
        ids = out["id"].nunique()
    else:
        import pandas as pd

        t0 = timer()
        df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
        out = df.sort_values("value")
        wall = timer() - t0
        build = 0.0
        values = out["value"].to_numpy()
        ids = out["id"].nunique()
    import numpy as np

    is_sorted = bool(np.all(values[:-1] <= values[1:]))
    return build, wall, {"rows": int(len(values)), "first": float(values[0]), "last": float(values[-1]),
                         "sorted": is_sorted, "ids": int(ids)}


def check_sort(expected, result):
    ok = (result["rows"] == expected["rows"] and result["ids"] == expected["rows"] and result["sorted"]
          and result["first"] == expected["min_value"] / 100 and result["last"] == expected["max_value"] / 100)
    if not ok:
        fail(f"sort: {result}; expected {expected['rows']} rows from {expected['min_value'] / 100} "
             f"to {expected['max_value'] / 100}")
    del result["ids"]


def warm_up(system):
    """A tiny computation before the clock (imports, thread pools): a
    one-time cost a long-running program does not pay per query."""
    if system == "dask":
        import dask
        import dask.dataframe as dd
        import pandas as pd

        dask.compute(dd.from_pandas(pd.DataFrame({"a": ["x", "y"], "b": [1.0, 2.0]}), npartitions=2)
                     .groupby("a")["b"].mean(), **COMPUTE)
    elif system == "polars":
        import polars as pl

        pl.LazyFrame({"a": ["x", "y"], "b": [1.0, 2.0]}).group_by("a").agg(pl.col("b").mean()).collect()
    else:
        import pandas as pd

        pd.DataFrame({"a": ["x", "y"], "b": [1.0, 2.0]}).groupby("a")["b"].mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", choices=["csv-groupby", "join", "sort"])
    ap.add_argument("--system", choices=["polars", "dask", "pandas"], default="dask")
    ap.add_argument("--scheduler", default="threads", choices=["threads", "distributed"])
    ap.add_argument("--dir", default="/tmp/blockwise-bench/csv")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    if args.scheduler == "distributed" and (args.workload != "csv-groupby" or args.system != "dask"):
        ap.error("--scheduler distributed: only csv-groupby on Dask")
    global COMPUTE
    workers = os.cpu_count() if args.system != "pandas" else 1
    if args.system == "dask":
        COMPUTE, workers = dask_scheduler(args.scheduler)
    expected = load_expected(args.dir, f"blockwise-bench {args.workload} --dir {args.dir}")
    nbytes = sum(os.path.getsize(p) for p in files(args.dir))
    for i in range(args.repeat):
        warm_up(args.system)
        record = base_record(args.workload, args.system, args.scheduler if args.system == "dask" else "-",
                             workers, i)
        rss_before = status_bytes("VmRSS")
        if args.workload == "csv-groupby":
            build, wall, result = csv_groupby(args.system, args.dir)
            peak = status_bytes("VmHWM")
            check_groupby(expected, result)
            record["groups"] = len(result)
        elif args.workload == "join":
            build, wall, result = join(args.system, args.dir)
            peak = status_bytes("VmHWM")
            check_join(expected, result)
        else:
            build, wall, result = sort(args.system, args.dir)
            peak = status_bytes("VmHWM")
            check_sort(expected, result)
        record.update(dir=args.dir, rows=expected["rows"], bytes=nbytes, build_s=round(build, 6),
                      wall_s=round(wall, 6), total_s=round(build + wall, 6), peak_rss_bytes=peak,
                      rss_before_bytes=rss_before, result=result)
        if args.system == "polars":
            import polars

            versions(record, polars=polars)
        elif args.system == "dask":
            import dask

            versions(record, dask=dask)
        else:
            import pandas

            versions(record, pandas=pandas)
        emit(record)


if __name__ == "__main__":
    main()
