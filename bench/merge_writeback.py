"""Benchmark: write-back under load — MERGE of N item rows into an N-row ``item_sid_features``.

    python bench/merge_writeback.py [--n 1000000] [--master local[2]] [--root DIR]

The target holds N rows at ``sid_model_version='1'``. The source is N rows: 10% of the existing
keys changed (``sid_model_version='2'``, new ``sid_l1``), 10% new keys, 80% identical to the
target; the last 10% of the target's keys are absent from the source. One ``DeltaStore.merge``
(the configured backend; delta-rs here) is timed. Checks, computed in Spark over the merged table:

* rows after = rows before + new, and no duplicate ``item_id``;
* every changed row carries version '2' and the new ``sid_l1``; every new row is there with '2';
* every unchanged row (identical in the source, or absent from it) keeps version '1' and its ``sid_l1``.

Prints a table and, last, one JSON line (seconds, rows/s, the checks).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def frames(spark, n: int):
    """(target, source) DataFrames of the benchmark for ``n`` rows (see the module docstring)."""
    from pyspark.sql import functions as F

    def sid_rows(df, version: str, l1):
        return df.select(
            "item_id", l1.cast("int").alias("sid_l1"), (F.col("id") % 4).cast("int").alias("sid_l2"),
            F.lit(0).alias("sid_l3"), F.lit(0).alias("sid_suffix"),
            F.format_string("%d-%d-0", l1.cast("int"), F.col("id") % 4).alias("sid"),
            F.lit("p").alias("sid_path"), F.lit("bench").alias("sid_model_name"), F.lit(version).alias("sid_model_version"),
            F.lit(T0).cast("timestamp").alias("updated_at"),
        )

    ids = spark.range(n).withColumn("item_id", F.format_string("i%09d", "id"))
    tenth = n // 10
    target = sid_rows(ids, "1", F.col("id") % 8)
    changed = sid_rows(ids.where(F.col("id") < tenth), "2", (F.col("id") % 8) + 100)
    same = sid_rows(ids.where((F.col("id") >= tenth) & (F.col("id") < n - tenth)), "1", F.col("id") % 8)
    new = sid_rows(spark.range(tenth).withColumn("item_id", F.format_string("n%09d", "id")), "2", F.col("id") % 8)
    return target, changed.unionByName(same).unionByName(new), tenth


def checks(spark, store, n: int, tenth: int, rows_before: int) -> dict:
    """The write-back checks over the merged table (Spark aggregations; nothing collected but counts)."""
    from pyspark.sql import functions as F

    out = store.read("item_sid_features")
    idn = F.substring("item_id", 2, 9).cast("long")
    kind = (F.when(F.col("item_id").startswith("n"), "new").when(idn < tenth, "changed").otherwise("unchanged"))
    want_l1 = F.when(kind == "changed", (idn % 8) + 100).otherwise(idn % 8)
    want_v = F.when(kind == "unchanged", "1").otherwise("2")
    agg = (out.select(kind.alias("kind"), ((F.col("sid_model_version") == want_v) & (F.col("sid_l1") == want_l1)).alias("ok"), "item_id")
           .groupBy("kind").agg(F.count("*").alias("rows"), F.sum(F.col("ok").cast("int")).alias("ok"),
                                F.countDistinct("item_id").alias("distinct")).collect())
    by = {r["kind"]: r.asDict() for r in agg}
    rows_after = sum(r["rows"] for r in by.values())
    get = lambda k, f: int(by.get(k, {}).get(f) or 0)  # noqa: E731
    return {
        "rows_before": rows_before, "rows_after": rows_after, "new_rows": tenth,
        "rows_after_eq_before_plus_new": rows_after == rows_before + tenth,
        "no_duplicate_keys": sum(get(k, "distinct") for k in by) == rows_after,
        "changed_rows_new_version": get("changed", "rows") == tenth and get("changed", "ok") == tenth,
        "new_rows_new_version": get("new", "rows") == tenth and get("new", "ok") == tenth,
        "unchanged_rows_keep_version": get("unchanged", "rows") == n - tenth and get("unchanged", "ok") == n - tenth,
        "store_count_matches": store.count("item_sid_features") == rows_after,
    }


def measure(spark, store, n: int) -> dict:
    """Write the N-row target, time one MERGE of the N-row source, run :func:`checks`."""
    target, source, tenth = frames(spark, n)
    t = time.perf_counter()
    store.write(target, "item_sid_features")
    write_s = time.perf_counter() - t
    before = store.count("item_sid_features")
    v0 = store.version("item_sid_features")
    t = time.perf_counter()
    res = store.merge(source, "item_sid_features")
    merge_s = time.perf_counter() - t
    c = checks(spark, store, n, tenth, before)
    c["one_commit"] = res.version == v0 + 1
    return {"n": n, "write_seconds": round(write_s, 2), "merge_seconds": round(merge_s, 2),
            "merge_source_rows_per_s": round(n / merge_s), "checks": c, "all_checks_ok": all(v for k, v in c.items() if isinstance(v, bool))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="rows in the target and in the source (default: %(default)s)")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--root", default="", help="work dir (default: a temp dir, removed afterwards)")
    args = ap.parse_args()
    if args.n < 10:
        ap.error("--n must be >= 10")
    from pyspark.sql import SparkSession

    from lgsid.config import load_config, replace
    from lgsid.storage import DeltaStore

    spark = (SparkSession.builder.master(args.master).appName("bench-merge-writeback")
             .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.session.timeZone", "UTC").config("spark.sql.shuffle.partitions", "4")
             .config("spark.driver.memory", "4g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    with tempfile.TemporaryDirectory(dir=args.root or None) as tmp:
        cfg = replace(load_config(None), storage={"root": os.path.join(tmp, "tables"), "staging_dir": os.path.join(tmp, "staging")})
        store = DeltaStore(spark, cfg.storage)
        r = measure(spark, store, args.n)
        r["backend"] = store.backend
    spark.stop()
    print(f"{'rows':>10} {'write s':>8} {'merge s':>8} {'rows/s':>10}  checks")
    print(f"{r['n']:10,d} {r['write_seconds']:8.1f} {r['merge_seconds']:8.1f} {r['merge_source_rows_per_s']:10,d}  "
          f"{'all ok' if r['all_checks_ok'] else [k for k, v in r['checks'].items() if v is False]}")
    print(f"master {args.master}, backend {r['backend']}, cpu_count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    print(json.dumps({"bench": "merge_writeback", **r}))
    return 0 if r["all_checks_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
