"""Anchors of blockwise-bench's array workloads: Dask array (threaded
scheduler) and NumPy.

    bench/anchors/run array-mean --system dask|numpy [--n 10000] [--chunk 1000]
    bench/anchors/run array-sum-zarr --system dask [--dir /tmp/blockwise-bench/array.zarr]
    bench/anchors/run matmul --system dask|numpy [--n 8000] [--chunk 1000]

- array-mean: uniform random n x n (Dask: in chunk x chunk blocks), mean
  over axis 0; result = the sum of the n means (about n/2; checked to 1%).
  The numbers are NumPy's own, not blockwise's: only the work is the same.
- array-sum-zarr: the sum of the Zarr v3 store blockwise-bench wrote (run
  it first), checked against the sum kept beside the store.
- matmul: a @ b of uniform random n x n float64; result = the sum of the
  product (checked against n^3/4 to 1%). NumPy's BLAS gets every core
  (OMP/OpenBLAS threads = cores); under Dask, BLAS runs one thread per task
  and Dask one task per core. wall_s includes drawing the numbers, as
  blockwise's does; gen_s and matmul_s split NumPy's.

build_s is the time to build the lazy collection (0 for NumPy), wall_s
the computation; peak_rss_bytes is this process's VmHWM.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import base_record, close, count, dask_scheduler, emit, fail, status_bytes, timer, versions  # noqa: E402


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", choices=["array-mean", "array-sum-zarr", "matmul"])
    ap.add_argument("--system", choices=["dask", "numpy"], default="dask")
    ap.add_argument("--scheduler", default="threads", choices=["threads", "distributed"])
    ap.add_argument("--n", type=count)
    ap.add_argument("--chunk", type=count, default=1000)
    ap.add_argument("--seed", type=count, default=42)
    ap.add_argument("--dir", default="/tmp/blockwise-bench/array.zarr")
    ap.add_argument("--repeat", type=count, default=1)
    args = ap.parse_args()
    if args.scheduler == "distributed" and (args.workload != "array-mean" or args.system != "dask"):
        ap.error("--scheduler distributed: only array-mean on Dask")
    if args.n is None:
        args.n = 8000 if args.workload == "matmul" else 10000
    return args


def warm_up_dask(compute):
    """A tiny computation before the clock: Dask imports parts of itself
    (and starts its thread pool) on the first compute, a one-time cost a
    long-running program does not pay per computation."""
    import dask
    import dask.array as da

    dask.compute(da.random.default_rng(0).random((4, 4), chunks=2).mean(axis=0) @ da.ones((4, 4), chunks=2),
                 **compute)


def array_mean(args, record):
    import numpy as np

    n, chunk = args.n, args.chunk
    rss_before = status_bytes("VmRSS")
    if args.system == "numpy":
        rng = np.random.default_rng(args.seed)
        t0 = timer()
        x = rng.random((n, n))
        means = x.mean(axis=0)
        wall = timer() - t0
        build = 0.0
        tasks = None
    else:
        import dask
        import dask.array as da

        t0 = timer()
        x = da.random.default_rng(args.seed).random((n, n), chunks=(chunk, chunk))
        m = x.mean(axis=0)
        build = timer() - t0
        tasks = len(dict(m.__dask_graph__()))
        t1 = timer()
        (means,) = dask.compute(m, **args.compute)
        wall = timer() - t1
    peak = status_bytes("VmHWM")
    result = float(means.sum())
    if len(means) != n or not (0.49 * n <= result <= 0.51 * n):
        fail(f"array-mean: {len(means)} means summing to {result}, expected n = {n} means summing to about {n / 2}")
    record.update(n=n, chunk=chunk, tasks=tasks, bytes=n * n * 8, build_s=round(build, 6), wall_s=round(wall, 6), total_s=round(build + wall, 6),
                  peak_rss_bytes=peak, rss_before_bytes=rss_before, result=result)


def array_sum_zarr(args, record):
    import json

    import dask
    import dask.array as da

    if args.system != "dask":
        fail("array-sum-zarr: only the Dask anchor exists (the store is larger than NumPy should load)")
    name = os.path.basename(os.path.normpath(args.dir))
    sidecar = os.path.join(os.path.dirname(os.path.normpath(args.dir)), name + ".bench.json")
    try:
        with open(sidecar) as f:
            meta = json.load(f)
    except OSError:
        fail(f"{sidecar} is missing: run `blockwise-bench array-sum-zarr --dir {args.dir}` first (it writes the store)")
    rss_before = status_bytes("VmRSS")
    t0 = timer()
    x = da.from_zarr(args.dir)
    s = x.sum()
    build = timer() - t0
    t1 = timer()
    (result,) = dask.compute(s, scheduler="threads")
    wall = timer() - t1
    peak = status_bytes("VmHWM")
    result = float(result)
    if not close(result, meta["sum"], 1e-9):
        fail(f"array-sum-zarr: got {result}, expected {meta['sum']}")
    nbytes = x.nbytes
    record.update(rows=x.shape[0], cols=x.shape[1], chunk_rows=x.chunksize[0], chunk_cols=x.chunksize[1],
                  tasks=x.npartitions, bytes=nbytes, build_s=round(build, 6), wall_s=round(wall, 6), total_s=round(build + wall, 6),
                  gb_per_s=round(nbytes / 1e9 / (build + wall), 3), peak_rss_bytes=peak, rss_before_bytes=rss_before,
                  result=result)


def matmul(args, record):
    import numpy as np

    n, chunk = args.n, args.chunk
    rss_before = status_bytes("VmRSS")
    if args.system == "numpy":
        rng = np.random.default_rng(args.seed)
        t0 = timer()
        a = rng.random((n, n))
        b = rng.random((n, n))
        t1 = timer()
        c = a @ b
        t2 = timer()
        record.update(gen_s=round(t1 - t0, 6), matmul_s=round(t2 - t1, 6))
        build, wall, tasks = 0.0, t2 - t0, None
    else:
        import dask
        import dask.array as da

        t0 = timer()
        rng = da.random.default_rng(args.seed)
        a = rng.random((n, n), chunks=(chunk, chunk))
        b = rng.random((n, n), chunks=(chunk, chunk))
        p = a @ b
        build = timer() - t0
        tasks = len(dict(p.__dask_graph__()))
        t1 = timer()
        (c,) = dask.compute(p, scheduler="threads")
        wall = timer() - t1
    peak = status_bytes("VmHWM")
    result = float(c.sum())
    if c.shape != (n, n) or not close(result, n**3 / 4, 0.01):
        fail(f"matmul: shape {c.shape}, sum {result}; expected ({n}, {n}) and about {n**3 / 4}")
    record.update(n=n, chunk=chunk, tasks=tasks, build_s=round(build, 6), wall_s=round(wall, 6), total_s=round(build + wall, 6),
                  gflop_per_s=round(2 * n**3 / wall / 1e9, 2), peak_rss_bytes=peak, rss_before_bytes=rss_before,
                  result=result)


def main():
    args = parse()
    if args.system == "numpy":
        # NumPy alone should use the whole machine in its BLAS (matmul).
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(os.cpu_count())
    import numpy as np

    run = {"array-mean": array_mean, "array-sum-zarr": array_sum_zarr, "matmul": matmul}[args.workload]
    args.compute, workers = dask_scheduler(args.scheduler) if args.system == "dask" else ({}, 1)
    for i in range(args.repeat):
        if args.system == "dask":
            warm_up_dask(args.compute)
            record = base_record(args.workload, "dask", args.scheduler, workers, i)
        else:
            # NumPy runs on one thread, but its BLAS (matmul) on every core.
            workers = os.cpu_count() if args.workload == "matmul" else 1
            record = base_record(args.workload, "numpy", "-", workers, i)
        run(args, record)
        if args.system == "dask":
            import dask

            versions(record, dask=dask, numpy=np)
        else:
            versions(record, numpy=np)
        emit(record)


if __name__ == "__main__":
    main()
