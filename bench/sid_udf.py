"""Benchmark: SID model as a Spark UDF (mlflow.pyfunc.spark_udf) vs in-process NumPy assignment.

    python bench/sid_udf.py [--n 1000000] [--dim 384] [--batch N] [--master local[2]] [--repeats 2] [--quick]

Builds a toy catalogue, fits HGIT on a sample, logs + registers it in a throwaway MLflow store,
writes ``items`` + ``item_embeddings`` (``embedding`` ARRAY<FLOAT> and ``embedding_f32`` BINARY)
to Delta, then times, with the repeats of all paths interleaved so load changes hit them alike:

* **write-sids UDF** — what ``lgsid write-sids`` runs: the Delta tables read, joined
  (:func:`lgsid.sid_store.udf_input`) and fed to the registered model through
  :func:`lgsid.sid_store.apply_sid_udf` with ``embedding_f32``; the output is consumed by an
  aggregate so Spark cannot prune the UDF. This is the rate the targets apply to.
* the same UDF over the joined rows cached in memory (the UDF without Delta read and join);
* a trivial ``pandas_udf`` (no model: returns constant codes) called exactly like the SID UDF,
  positional arguments, same result struct: Spark's Python-UDF machinery alone (Arrow -> pandas per
  argument, the row queue that zips outputs with inputs, pandas -> Arrow), the bound any
  ``spark_udf`` can reach on the machine;
* ``check_udf_input``, the input check ``write-sids`` runs first (byte lengths only);
* ``tokenizer.encode`` on the same items in this process (the in-process rate; the arrays are
  already in memory), and, for context, the same after reading both Delta tables on the driver
  (pyarrow) and decoding ``embedding_f32``;
* no-op ``mapInArrow`` over the same joined rows with ARRAY<FLOAT> and with BINARY: Spark's JVM ->
  Arrow transfer alone, the bound any Python UDF over that column can reach on the machine.

The UDF's codes are then compared with the in-process codes for every item (untimed). Prints a
table, an estimated floor for any ``spark_udf`` running this model (trivial UDF + the in-process
encode's CPU seconds spread over the cores, with the ratio that floor allows) and, last, one JSON
line. Targets: >= 100k items/s on 2 cores and >= 0.5x in-process.

Scale matters for the ratio: each Spark query has fixed costs (job and task start, the model loaded
in each task) that in-process numpy does not. At the default 1M items (a feature-store write-back)
they are small; at 200k items even the trivial UDF reaches only ~0.55x in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Iterator, Tuple

import pandas as pd

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def trivial_udf(result_type: str):
    """A ``pandas_udf`` with the SID UDF's call shape that does no work: constant codes, one path string."""
    import numpy as np
    from pyspark.sql.functions import pandas_udf

    @pandas_udf(result_type)
    def noop_sid(it: Iterator[Tuple[pd.Series, ...]]) -> Iterator[pd.DataFrame]:
        for args in it:
            z = np.zeros(len(args[0]), np.int32)
            yield pd.DataFrame({"sid_l1": z, "sid_l2": z, "sid_l3": z, "sid_path": np.full(len(z), "s / c / k", dtype=object)})

    return noop_sid


def model_input_schema(uri: str):
    import mlflow.models

    return mlflow.models.get_model_info(uri).signature.inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--fit-n", type=int, default=20_000, help="items the tokenizer is fitted on")
    ap.add_argument("--batch", type=int, default=0, help="spark.sql.execution.arrow.maxRecordsPerBatch (default: sid_store.batch_size)")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="20k items, 2 repeats (smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.n, args.fit_n, args.repeats = 20_000, 10_000, 2

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from pyspark.sql import functions as F

    from lgsid.config import load_config, replace
    from lgsid.embedding_f32 import decode_f32, encode_f32
    from lgsid.registry import log_sid_model
    from lgsid.serving.sid_model import save_artifacts, signature
    from lgsid.sid_store import SPARK_RESULT_TYPE, apply_sid_udf, apply_udf, check_udf_input, udf_input
    from lgsid.spark import get_spark
    from lgsid.storage import DeltaStore
    from lgsid.tokenizer import build_tokenizer
    from lgsid.tokenizer.features import FEATURE_COLUMNS
    from lgsid.tokenizer.job import model_tags
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
    batch = args.batch or cfg.sid_store.batch_size
    t0 = time.perf_counter()
    items, emb = toy_catalogue(args.n, args.dim, seed=1, counties_per_state=12, towns_per_county=6)
    tok = build_tokenizer(cfg.tokenizer).fit(emb[: args.fit_n], items.iloc[: args.fit_n].reset_index(drop=True))
    with stage_run(cfg, "bench-sid-udf", log_config=False), tempfile.TemporaryDirectory() as tmp:
        art = save_artifacts(f"{tmp}/sid_model", tok, list(tok.l1_paths), "reference", cfg.to_dict()["encoder"], cfg.to_dict()["prompts"])
        version = log_sid_model(cfg, art, signature(int(tok.dim)), model_tags(tok, "reference"))
    uri = f"models:/{cfg.mlflow.sid_model_name}/{version}"

    spark = get_spark(cfg)
    store = DeltaStore(spark, cfg.storage)
    store.write(spark.createDataFrame(items), "items")
    emb_pdf = pd.DataFrame({"item_id": items["item_id"], "model_name": "toy", "model_version": "reference",
                            "embedding": list(emb), "dim": args.dim, "created_at": pd.Timestamp.now(tz="UTC"),
                            "embedding_f32": encode_f32(emb), "input_sha": "bench"})
    store.write(spark.createDataFrame(emb_pdf), "item_embeddings")
    del emb_pdf
    print(f"setup (data + fit + register + Delta write): {time.perf_counter() - t0:.1f}s", flush=True)

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch))
    items_t, emb_t = store.read("items"), store.read("item_embeddings")
    bcast = 0 < cfg.sid_store.broadcast_items_rows and args.n <= cfg.sid_store.broadcast_items_rows
    joined = udf_input(items_t, emb_t, "reference", broadcast_items=bcast)  # what write-sids feeds the UDF
    attrs = items_t.select("item_id", *FEATURE_COLUMNS)
    joined_arr = emb_t.select("item_id", "embedding").join(F.broadcast(attrs) if bcast else attrs, "item_id")  # for the ARRAY transfer bound
    cached = joined.cache()
    assert cached.count() == args.n
    t = time.perf_counter()
    scored = apply_sid_udf(spark, joined, uri)  # spark_udf(): resolves + downloads the model once
    udf_setup = time.perf_counter() - t
    scored_cached = apply_sid_udf(spark, cached, uri)
    trivial = trivial_udf(SPARK_RESULT_TYPE)
    scored_trivial = apply_udf(spark, joined, trivial, model_input_schema(uri))

    def consume(df):  # aggregate over the UDF output, so Spark must run it for every row
        r = df.agg(F.count("sid_l1").alias("n"), F.sum("sid_l1").alias("s1"), F.sum("sid_l3").alias("s3"),
                   F.sum(F.length("sid_path")).alias("p")).collect()[0]
        assert r["n"] == args.n
        return r

    def noop(batches):
        import pyarrow as pa

        for b in batches:
            yield pa.RecordBatch.from_pydict({"n": [b.num_rows]})

    def transfer(df):
        assert df.mapInArrow(noop, "n long").agg(F.sum("n")).collect()[0][0] == args.n

    def check():
        check_udf_input(items_t, emb_t, "reference", args.dim)

    def inproc():
        return tok.encode(emb, items)

    def inproc_delta():  # the same job in this process, starting from the Delta tables
        feats = store.to_pandas("items", ["item_id", *FEATURE_COLUMNS])
        e = store.to_pandas("item_embeddings", ["item_id", "model_version", "embedding_f32"])
        df = feats.merge(e[e["model_version"] == "reference"], on="item_id")
        return tok.encode(decode_f32(df["embedding_f32"], args.dim, df["item_id"]), df)

    paths = {
        "udf": ("Spark UDF, write-sids input (BINARY)", lambda: consume(scored)),
        "udf_cached": ("Spark UDF, cached joined rows (BINARY)", lambda: consume(scored_cached)),
        "bound_trivial_udf": ("bound: trivial pandas_udf, same call", lambda: consume(scored_trivial)),
        "check": ("write-sids input check", check),
        "inprocess": ("in-process tokenizer.encode", inproc),
        "inprocess_delta": ("in-process incl. Delta read + decode", inproc_delta),
        "bound_array": ("bound: no-op transfer ARRAY<FLOAT>", lambda: transfer(joined_arr)),
        "bound_binary": ("bound: no-op transfer BINARY", lambda: transfer(joined)),
    }
    first = {}
    for k in ("udf", "udf_cached", "bound_trivial_udf"):  # starts the Python workers and loads the model in them
        t = time.perf_counter()
        paths[k][1]()
        first[k] = time.perf_counter() - t
    times = {k: [] for k in paths}
    results = {}
    inproc_cpu = []  # CPU seconds of the in-process encode (all threads of this process)
    for _ in range(args.repeats):
        for k, (_, fn) in paths.items():
            t, c = time.perf_counter(), time.process_time()
            results[k] = fn()
            times[k].append(time.perf_counter() - t)
            if k == "inprocess":
                inproc_cpu.append(time.process_time() - c)
    load = os.getloadavg()[0]

    codes = results["inprocess"]
    for k in ("udf", "udf_cached"):
        agg = results[k]
        assert int(codes[:, 0].sum()) == int(agg["s1"]) and int(codes[:, 2].sum()) == int(agg["s3"]), f"{k}: UDF and in-process disagree"
    # every item, untimed: the write-sids UDF's codes equal the in-process codes
    got = scored.select("item_id", "sid_l1", "sid_l2", "sid_l3").toPandas().sort_values("item_id")
    assert got["item_id"].tolist() == items["item_id"].tolist()
    n_equal = int((got[["sid_l1", "sid_l2", "sid_l3"]].to_numpy(dtype=np.int64) == codes).all(axis=1).sum())
    assert n_equal == args.n, f"UDF codes differ from in-process codes for {args.n - n_equal} items"

    rate = {k: args.n / min(v) for k, v in times.items()}
    print(f"\nSID assignment of {args.n:,} items, dim {args.dim}, codebooks {cfg.tokenizer.codebook_sizes}, master {args.master}, "
          f"arrow batch {batch:,}, cpu_count {os.cpu_count()}, load average {load:.1f}")
    print(f"{'path':42s} {'best s':>8s} {'items/s':>12s}")
    for k, (name, _) in paths.items():
        print(f"{name:42s} {min(times[k]):8.2f} {rate[k]:12,.0f}")
    ratio = rate["udf"] / rate["inprocess"]
    # Estimated floor of any spark_udf running this model: the UDF machinery alone (trivial UDF) plus the
    # model's CPU (at least what the same encode costs in this process) spread over the cores.
    cores = os.cpu_count() or 1
    floor_s = min(times["bound_trivial_udf"]) + min(inproc_cpu) / cores
    ratio_ceiling = min(times["inprocess"]) / floor_s
    print(f"write-sids UDF / in-process: {ratio:.2f}x  (targets: >= 100,000 items/s and >= 0.5x); UDF codes = in-process codes "
          f"for {n_equal:,}/{args.n:,} items; spark_udf() setup {udf_setup:.1f}s, first pass (worker start + model load) {first['udf']:.1f}s")
    print(f"estimated floor of a spark_udf with this model: trivial UDF {min(times['bound_trivial_udf']):.2f}s + in-process CPU "
          f"{min(inproc_cpu):.2f}s / {cores} cores = {floor_s:.2f}s -> at most {args.n / floor_s:,.0f} items/s, {ratio_ceiling:.2f}x in-process")
    print(json.dumps({
        "bench": "sid_udf", "n": args.n, "dim": args.dim, "master": args.master, "arrow_batch": batch,
        "udf_items_per_s": round(rate["udf"]), "udf_cached_items_per_s": round(rate["udf_cached"]),
        "trivial_udf_items_per_s": round(rate["bound_trivial_udf"]), "check_items_per_s": round(rate["check"]),
        "inprocess_items_per_s": round(rate["inprocess"]), "inprocess_delta_items_per_s": round(rate["inprocess_delta"]),
        "transfer_bound_array_items_per_s": round(rate["bound_array"]), "transfer_bound_binary_items_per_s": round(rate["bound_binary"]),
        "ratio": round(ratio, 3), "udf_vs_binary_transfer_bound": round(rate["udf"] / rate["bound_binary"], 3),
        "trivial_udf_vs_inprocess": round(rate["bound_trivial_udf"] / rate["inprocess"], 3),
        "inprocess_cpu_seconds": round(min(inproc_cpu), 3), "udf_floor_seconds": round(floor_s, 3),
        "ratio_ceiling_estimate": round(ratio_ceiling, 3), "items_join": "broadcast" if bcast else "spark decides",
        "load_average": round(load, 1), "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "udf_setup_seconds": round(udf_setup, 3), "first_pass_seconds": {k: round(v, 3) for k, v in first.items()},
        "items_equal_inprocess": n_equal,
        "meets_100k": rate["udf"] >= 100_000, "meets_half_inprocess": ratio >= 0.5,
    }))


if __name__ == "__main__":
    main()
