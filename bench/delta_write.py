"""Benchmark: an embedded-backend Delta write against Spark's plain Parquet write of the same frame.

    python bench/delta_write.py [--rows 1000000] [--dim 384] [--partitions 8] [--master local[2]]
                                [--driver-memory 6g] [--repeats 1] [--root DIR]

The frame is ``--rows`` rows of ``item_id`` (string) and ``embedding`` (``--dim`` floats, computed
in Spark), cached and counted first so that both writers start from the same materialised cache.
Timed, side by side in one Spark session (``--repeats`` rounds, the order alternating):

* ``DeltaRsStore.write(df, "bench_embeddings")``: the executors write the data files, the driver
  commits their add actions (one Delta version);
* ``df.write.parquet(dir)``: Spark's own Parquet writer, no table log.

The ratio is Spark's seconds over the Delta write's seconds (best round of each): 1.0 means the same
speed. Target: ratio >= 0.8 (prints PASS / FAIL). Checks: the Delta table counts ``--rows`` rows
from its add actions' statistics, and its version after the first write is one commit.
Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TARGET = 0.8


def frame(spark, rows: int, dim: int, partitions: int):
    """``rows`` rows of ``item_id`` and a ``dim``-float ``embedding``, cached and materialised."""
    from pyspark.sql import functions as F

    df = spark.range(0, rows, 1, numPartitions=partitions).select(
        F.format_string("i%09d", "id").alias("item_id"),
        F.expr(f"transform(sequence(1, {dim}), i -> cast(sin(id * {dim} + i) as float))").alias("embedding"),
    ).cache()
    assert df.count() == rows
    return df


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows to write (default: %(default)s)")
    ap.add_argument("--dim", type=int, default=384, help="embedding width (default: %(default)s)")
    ap.add_argument("--partitions", type=int, default=8, help="partitions of the frame, so write tasks (default: %(default)s)")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="6g", help="spark.driver.memory (local mode: the whole JVM) (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=1, help="timed rounds per writer; the best is reported (default: %(default)s)")
    ap.add_argument("--root", default="", help="work dir (default: a temp dir, removed afterwards)")
    args = ap.parse_args()
    if args.rows < 1 or args.dim < 1 or args.repeats < 1:
        ap.error("--rows, --dim and --repeats must be >= 1")
    from pyspark.sql import SparkSession

    from lgsid.config import load_config, replace
    from lgsid.storage import DeltaStore

    spark = (SparkSession.builder.master(args.master).appName("bench-delta-write")
             .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.session.timeZone", "UTC").config("spark.driver.memory", args.driver_memory)
             .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    secs: dict[str, list[float]] = {"deltars": [], "spark_parquet": []}
    with tempfile.TemporaryDirectory(dir=args.root or None) as tmp:
        cfg = replace(load_config(None), storage={"root": os.path.join(tmp, "tables"), "staging_dir": os.path.join(tmp, "staging")})
        store = DeltaStore(spark, cfg.storage)
        t = time.perf_counter()
        df = frame(spark, args.rows, args.dim, args.partitions)
        cache_s = time.perf_counter() - t
        checks: dict = {}

        def delta_write() -> None:
            v = store.version("bench_embeddings")
            res = store.write(df, "bench_embeddings")
            checks.setdefault("delta_rows_counted", res.rows == args.rows)
            checks.setdefault("delta_one_commit", v is None or res.version == v + 1)

        def parquet_write() -> None:
            out = os.path.join(tmp, "plain")
            shutil.rmtree(out, ignore_errors=True)
            df.write.mode("overwrite").parquet(out)

        for r in range(args.repeats):
            order = [("deltars", delta_write), ("spark_parquet", parquet_write)]
            for key, fn in (order if r % 2 == 0 else order[::-1]):
                t = time.perf_counter()
                fn()
                secs[key].append(time.perf_counter() - t)
        checks["delta_files"] = len(store._dt("bench_embeddings").file_uris())
        size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(store.path("bench_embeddings"))
                   for f in fs if f.endswith(".parquet") and f in {os.path.basename(u) for u in store._dt("bench_embeddings").file_uris()})
    spark.stop()
    best = {k: min(v) for k, v in secs.items()}
    ratio = best["spark_parquet"] / best["deltars"]
    ok = all(v for v in checks.values() if isinstance(v, bool))
    verdict = "PASS" if ratio >= TARGET and ok else "FAIL"
    gb = args.rows * args.dim * 4 / 1e9
    print(f"{'writer':<16} {'best s':>8} {'rows/s':>10}  rounds")
    for k in ("deltars", "spark_parquet"):
        print(f"{k:<16} {best[k]:8.1f} {args.rows / best[k]:10,.0f}  {[round(s, 1) for s in secs[k]]}")
    print(f"{args.rows:,d} rows x {args.dim} floats ({gb:.2f} GB of floats; {size / 1e9:.2f} GB of Delta data files), "
          f"cache built in {cache_s:.1f} s; master {args.master}, {args.partitions} partitions, driver memory {args.driver_memory}, "
          f"cpu_count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    print(f"speed vs Spark's df.write.parquet: {ratio:.2f}x (target >= {TARGET}x): {verdict}")
    print(json.dumps({"bench": "delta_write", "rows": args.rows, "dim": args.dim, "partitions": args.partitions,
                      "master": args.master, "seconds": {k: round(v, 2) for k, v in best.items()},
                      "rounds": {k: [round(s, 2) for s in v] for k, v in secs.items()}, "ratio": round(ratio, 3),
                      "target": TARGET, "verdict": verdict, "checks": checks, "delta_bytes": size}))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
