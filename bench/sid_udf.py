"""Benchmark: SID model as a Spark UDF (mlflow.pyfunc.spark_udf) vs in-process NumPy assignment.

    python bench/sid_udf.py [--n 200000] [--dim 384] [--batch 65536] [--master local[2]] [--quick]

Builds a toy catalogue, fits HGIT on a sample, logs + registers it in a throwaway MLflow store,
writes items + embeddings to Delta, then times (a) the registered model applied through
``lgsid.sid_store.apply_sid_udf`` over the joined items (output consumed by an aggregate so Spark
cannot prune the UDF), and (b) ``tokenizer.encode`` on the same items in this process. Prints a
table and, last, one JSON line. Targets: >= 100k items/s on 2 cores and >= 0.5x in-process.
It also times the same rows through a no-op ``mapInArrow`` (Spark's JVM -> Arrow conversion of
ARRAY<FLOAT> alone), the upper bound any Python UDF over this column can reach on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--fit-n", type=int, default=20_000, help="items the tokenizer is fitted on")
    ap.add_argument("--batch", type=int, default=65_536, help="spark.sql.execution.arrow.maxRecordsPerBatch")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="20k items, 2 repeats (smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.n, args.fit_n, args.repeats = 20_000, 10_000, 2

    import numpy as np
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    from pyspark.sql import functions as F

    from lgsid.config import load_config, replace
    from lgsid.registry import log_sid_model
    from lgsid.sid_store import apply_sid_udf
    from lgsid.spark import get_spark
    from lgsid.storage import DeltaStore
    from lgsid.tokenizer import build_tokenizer
    from lgsid.tokenizer.job import items_with_embeddings
    from lgsid.tokenizer.toy import toy_catalogue
    from lgsid.tracking import stage_run

    work = tempfile.mkdtemp(prefix="lgsid-bench-udf-")
    cfg = replace(
        load_config(None),
        storage={"root": f"{work}/tables", "staging_dir": f"{work}/staging"},
        spark={"master": args.master, "shuffle_partitions": 2, "petastorm_cache_dir": f"{work}/petastorm", "driver_memory": "6g"},
        mlflow={"tracking_uri": f"sqlite:///{work}/mlflow.db", "artifact_root": f"{work}/mlartifacts"},
        tokenizer={"codebook_sizes": [64, 64, 64], "epochs": 2},
    )
    t0 = time.perf_counter()
    items, emb = toy_catalogue(args.n, args.dim, seed=1, counties_per_state=12, towns_per_county=6)
    tok = build_tokenizer(cfg.tokenizer).fit(emb[: args.fit_n], items.iloc[: args.fit_n].reset_index(drop=True))
    with stage_run(cfg, "bench-sid-udf", log_config=False), tempfile.TemporaryDirectory() as tmp:
        version = log_sid_model(cfg, tok, list(tok.l1_paths), tmp, "reference")
    uri = f"models:/{cfg.mlflow.sid_model_name}/{version}"
    print(f"setup (data + fit + register): {time.perf_counter() - t0:.1f}s", flush=True)

    spark = get_spark(cfg)
    store = DeltaStore(spark, cfg.storage)
    store.write(spark.createDataFrame(items), "items")
    emb_pdf = pd.DataFrame({"item_id": items["item_id"], "model_name": "toy", "model_version": "reference",
                            "embedding": list(emb), "dim": args.dim, "created_at": pd.Timestamp.now(tz="UTC")})
    store.write(spark.createDataFrame(emb_pdf), "item_embeddings")
    del emb_pdf
    df = items_with_embeddings(store.read("items"), store.read("item_embeddings"), "reference").repartition(2).cache()
    assert df.count() == args.n

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.batch))
    t = time.perf_counter()
    scored = apply_sid_udf(spark, df, uri)  # spark_udf(): resolves + downloads the model once
    udf_setup = time.perf_counter() - t
    udf_times = []
    for _ in range(args.repeats):  # the first pass also starts the Python workers and loads the model in them
        t = time.perf_counter()
        agg = scored.agg(F.count("sid_codes").alias("n"), F.sum("sid_l1").alias("s1"), F.sum("sid_l3").alias("s3")).collect()[0]
        udf_times.append(time.perf_counter() - t)
    assert agg["n"] == args.n

    # Bound: the same rows through Spark -> Arrow -> Python with a no-op mapInArrow (no model at all).
    cols = list(df.columns)

    def noop(batches):
        import pyarrow as pa

        for b in batches:
            yield pa.RecordBatch.from_pydict({"n": [b.num_rows]})

    transfer_times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        assert df.select(*cols).mapInArrow(noop, "n long").agg(F.sum("n")).collect()[0][0] == args.n
        transfer_times.append(time.perf_counter() - t)

    inproc_times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        codes = tok.encode(emb, items)
        inproc_times.append(time.perf_counter() - t)
    assert int(codes[:, 0].sum()) == int(agg["s1"]) and int(codes[:, 2].sum()) == int(agg["s3"]), "UDF and in-process disagree"

    udf_rate = args.n / min(udf_times)
    inproc_rate = args.n / min(inproc_times)
    transfer_rate = args.n / min(transfer_times)
    rows = [("Spark UDF (pyfunc, spark_udf)", min(udf_times), udf_rate), ("in-process tokenizer.encode", min(inproc_times), inproc_rate),
            ("bound: Spark->Arrow no-op transfer", min(transfer_times), transfer_rate)]
    print(f"\nSID assignment of {args.n:,} items, dim {args.dim}, codebooks {cfg.tokenizer.codebook_sizes}, master {args.master}, "
          f"arrow batch {args.batch:,}, cpu_count {os.cpu_count()}")
    print(f"{'path':34s} {'best s':>8s} {'items/s':>12s}")
    for name, sec, rate in rows:
        print(f"{name:34s} {sec:8.2f} {rate:12,.0f}")
    ratio = udf_rate / inproc_rate
    print(f"UDF / in-process: {ratio:.2f}x  (targets: >= 100,000 items/s and >= 0.5x); spark_udf() setup {udf_setup:.1f}s, "
          f"first pass (worker start + model load) {udf_times[0]:.1f}s; load average {os.getloadavg()[0]:.1f}")
    print(json.dumps({"bench": "sid_udf", "n": args.n, "dim": args.dim, "master": args.master, "arrow_batch": args.batch,
                      "udf_items_per_s": round(udf_rate), "inprocess_items_per_s": round(inproc_rate), "transfer_bound_items_per_s": round(transfer_rate), "ratio": round(ratio, 3),
                      "udf_vs_transfer_bound": round(udf_rate / transfer_rate, 3), "load_average": round(os.getloadavg()[0], 1),
                      "udf_seconds": [round(t, 3) for t in udf_times], "udf_setup_seconds": round(udf_setup, 3), "inprocess_seconds": [round(t, 3) for t in inproc_times],
                      "meets_100k": udf_rate >= 100_000, "meets_half_inprocess": ratio >= 0.5}))


if __name__ == "__main__":
    main()
