"""Benchmark: UDF task time with and without :mod:`lgsid.spark.worker_daemon` (local mode).

    python bench/worker_daemon.py                  # demo default: 3,000 items in 2 tasks, plus 200k
    python bench/worker_daemon.py --quick          # 3,000 items only, 2 repeats

:func:`lgsid.spark.get_spark` runs local-mode Python workers through ``lgsid.spark.worker_daemon``
(pyspark's daemon with Spark's zips and jar off ``sys.path`` and ``zipimporter.invalidate_caches``
skipping them). This measures whether that matters, side by side in one run: each repeat starts one
fresh process per mode (``daemon`` = what ``get_spark`` does, ``plain`` = ``pyspark.daemon``, set
through ``spark.conf``), alternating, so load changes on the machine hit both alike. Each process
warms its workers with one untimed query, then times, per size, ``--queries`` queries of

* ``mlflow_udf``: a trivial MLflow pyfunc (returns zeros) through ``mlflow.pyfunc.spark_udf``, the
  write-back's path: every task loads the model and MLflow checks installed package versions;
* ``pandas_udf``: a trivial ``pandas_udf`` (Spark's Python-UDF machinery alone).

over ``n`` rows in ``--partitions`` tasks (the write-back's default is one task per core), the
result consumed by an aggregate. Reports the median (and minimum) seconds per query of each mode and
the ratio of medians plain / daemon (> 1 means the daemon is faster). The last line is one JSON object.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

MODES = ("daemon", "plain")


def child(mode: str, sizes: list[int], partitions: int, queries: int, work: str) -> dict:
    """Run in a fresh process: start a local[2] session in ``mode``, time the queries, return seconds."""
    import mlflow.pyfunc
    import pandas as pd
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    from lgsid.config import load_config, replace
    from lgsid.spark import get_spark

    class Zeros(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return pd.Series([0] * len(model_input), dtype="int32")

    model_dir = os.path.join(work, f"model-{mode}")
    mlflow.pyfunc.save_model(model_dir, python_model=Zeros())
    extra = {} if mode == "daemon" else {"spark.python.daemon.module": "pyspark.daemon"}
    cfg = replace(load_config(None), spark={"master": "local[2]", "shuffle_partitions": 2,
                                            "petastorm_cache_dir": os.path.join(work, "petastorm"), "conf": extra})
    spark = get_spark(cfg)
    daemon_module = spark.conf.get("spark.python.daemon.module", "pyspark.daemon")
    mlflow_udf = mlflow.pyfunc.spark_udf(spark, model_dir, result_type="int")

    @pandas_udf("int")
    def zeros(x: pd.Series) -> pd.Series:
        return pd.Series([0] * len(x), dtype="int32")

    def query(n: int, kind: str) -> float:
        df = spark.range(n, numPartitions=partitions).withColumn("x", F.col("id").cast("double"))
        out = df.withColumn("y", mlflow_udf("x") if kind == "mlflow_udf" else zeros("x"))
        t0 = time.perf_counter()
        out.agg(F.sum("y")).collect()
        return time.perf_counter() - t0

    query(1000, "mlflow_udf")  # untimed: workers forked, modules imported
    query(1000, "pandas_udf")
    seconds = {f"{kind}@{n}": [query(n, kind) for _ in range(queries)] for n in sizes for kind in ("mlflow_udf", "pandas_udf")}
    spark.stop()
    return {"mode": mode, "daemon_module": daemon_module, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="3000,200000", help="rows per query, comma-separated (demo default: 3000 items)")
    ap.add_argument("--partitions", type=int, default=2, help="tasks per query (write-back default: one per core of local[2])")
    ap.add_argument("--queries", type=int, default=3, help="timed queries per size, kind and process")
    ap.add_argument("--repeats", type=int, default=3, help="processes per mode, alternating")
    ap.add_argument("--quick", action="store_true", help="3000 rows only, 2 repeats")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.repeats = "3000", 2
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        print(json.dumps(child(args.child, sizes, args.partitions, args.queries, args.work)))
        return

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="lgsid-bench-daemon-") as work:
        for rep in range(args.repeats):
            for mode in MODES if rep % 2 == 0 else MODES[::-1]:
                cmd = [sys.executable, __file__, "--child", mode, "--sizes", args.sizes, "--partitions", str(args.partitions),
                       "--queries", str(args.queries), "--work", os.path.join(work, f"{mode}-{rep}")]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900).stdout
                runs[mode].append(json.loads(out.strip().splitlines()[-1]))
                print(f"[repeat {rep}] {mode}: {runs[mode][-1]['daemon_module']}", file=sys.stderr, flush=True)

    result: dict = {"partitions": args.partitions, "queries": args.queries, "repeats": args.repeats,
                    "daemon_module": {m: runs[m][0]["daemon_module"] for m in MODES}}
    print(f"{'query':<22}{'daemon s (min)':>16}{'plain s (min)':>16}{'plain/daemon':>14}")
    for key in runs["daemon"][0]["seconds"]:
        secs = {m: [s for r in runs[m] for s in r["seconds"][key]] for m in MODES}
        med = {m: statistics.median(secs[m]) for m in MODES}
        low = {m: min(secs[m]) for m in MODES}
        ratio = med["plain"] / med["daemon"]
        print(f"{key:<22}{med['daemon']:>9.3f} ({low['daemon']:.3f}){med['plain']:>9.3f} ({low['plain']:.3f}){ratio:>14.2f}")
        result[key] = {"daemon_s": round(med["daemon"], 4), "plain_s": round(med["plain"], 4), "plain_over_daemon": round(ratio, 3),
                       "daemon_min_s": round(low["daemon"], 4), "plain_min_s": round(low["plain"], 4)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
