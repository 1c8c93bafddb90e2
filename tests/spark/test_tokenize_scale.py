"""Driver-free tokenize: the fit sample, Spark suffixes and health against the in-memory reference, and the driver guard.

The guard (:func:`test_tokenize_and_write_sids_never_collect_the_embeddings`) runs ``tokenize``,
``write-sids`` and ``evaluate``'s reads with ``spark.driver.maxResultSize`` below the size of the catalogue's
embeddings, so a step that collects them to the driver fails the test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lgsid.errors import ConfigError, ValidationError

pytestmark = pytest.mark.spark


def _cfg(root, **tokenizer):
    from lgsid.config import load_config, replace

    tok = {"codebook_sizes": [6, 3, 2], "epochs": 2, "batch_size": 64, "geo_coverage_sample": 100, "bootstrap_champion": True}
    tok.update(tokenizer)
    return replace(
        load_config(None),
        storage={"root": str(root / "tables"), "staging_dir": str(root / "staging")},
        spark={"petastorm_cache_dir": str(root / "petastorm"), "shuffle_partitions": 1},
        mlflow={"tracking_uri": f"sqlite:///{root}/mlflow.db", "artifact_root": str(root / "mlartifacts")},
        tokenizer=tok,
        promote={"max_collision_rate": 1.0, "min_usage_l1": 0.1},
        sid_store={"batch_size": 64},
    )


def _write_catalogue(spark, cfg, n, dim, seed=11):
    from lgsid.embedding_f32 import encode_f32
    from lgsid.storage import DeltaStore
    from lgsid.tokenizer.toy import toy_catalogue

    store = DeltaStore(spark, cfg.storage)
    items, emb = toy_catalogue(n, dim, seed=seed)
    store.write(spark.createDataFrame(items), "items")
    store.write(spark.createDataFrame(pd.DataFrame({
        "item_id": items["item_id"].to_numpy(), "model_name": "toy", "model_version": "reference",
        "embedding": list(emb), "dim": dim, "created_at": pd.Timestamp("2026-01-01", tz="UTC"),
        "embedding_f32": encode_f32(emb), "input_sha": "toy",
    })), "item_embeddings")
    return store, items, emb


# ------------------------------------------------------------------ suffixes and health in Spark


def test_dedup_suffix_df_equals_the_in_memory_reference(spark):
    """Window suffixes == dedup_suffix on the rows sorted by item_id; 2 levels (sid_l3 null) and 3 levels."""
    from lgsid.tokenizer.dedup import dedup_suffix, dedup_suffix_df, format_sid

    rng = np.random.default_rng(5)
    for levels in (2, 3):
        n = 300
        ids = np.array([f"i{j:04d}" for j in rng.permutation(n)], dtype=object)  # input order is not item_id order
        codes = rng.integers(0, 3, size=(n, levels))  # many collisions
        cols = {f"sid_l{l + 1}": (codes[:, l].tolist() if l < levels else [None] * n) for l in range(3)}
        df = spark.createDataFrame(pd.DataFrame({"item_id": ids, **cols}).astype(object),
                                   "item_id STRING, sid_l1 INT, sid_l2 INT, sid_l3 INT").repartition(3)
        got = dedup_suffix_df(df).toPandas().sort_values("item_id").reset_index(drop=True)
        order = np.argsort(ids)
        want_suffix = dedup_suffix(codes[order])
        assert got["sid_suffix"].tolist() == want_suffix.tolist()
        assert got["sid"].tolist() == format_sid(codes[order], want_suffix).tolist()


def test_dedup_suffix_df_hand_computed(spark):
    from lgsid.tokenizer.dedup import dedup_suffix_df

    df = spark.createDataFrame([("c", 1, 2, 3), ("a", 1, 2, 3), ("b", 1, 2, 4), ("d", 1, 2, 3)], "item_id STRING, sid_l1 INT, sid_l2 INT, sid_l3 INT")
    got = {r["item_id"]: r["sid"] for r in dedup_suffix_df(df).collect()}
    assert got == {"a": "1-2-3-0", "c": "1-2-3-1", "d": "1-2-3-2", "b": "1-2-4-0"}


def test_codebook_health_df_equals_codebook_health(spark):
    from lgsid.tokenizer.health import codebook_health, codebook_health_df

    rng = np.random.default_rng(3)
    n, sizes = 500, [8, 4, 3]
    codes = np.stack([rng.integers(0, 7, n), rng.integers(0, 4, n), rng.integers(0, 2, n)], axis=1)  # code 7 of level 1 unused
    cats = rng.choice(["Food", "Shops", "Gym"], n)
    df = spark.createDataFrame(pd.DataFrame({"item_id": [f"i{j}" for j in range(n)], "sid_l1": codes[:, 0], "sid_l2": codes[:, 1],
                                             "sid_l3": codes[:, 2], "category": cats}).astype({"sid_l1": "int32", "sid_l2": "int32", "sid_l3": "int32"}))
    got = codebook_health_df(df, sizes)
    want = codebook_health(codes, sizes, cats)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-12), k


# ------------------------------------------------------------------ the sample


def test_fit_sample_is_bounded_seeded_and_streamed_in_item_id_order(spark, monkeypatch):
    from pyspark.sql import functions as F

    import lgsid.tokenizer.job as job
    from lgsid.embedding_f32 import encode_f32

    n, dim, k = 120, 5, 37
    rng = np.random.default_rng(0)
    ids = [f"it{j:03d}" for j in rng.permutation(n)]
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    items = spark.createDataFrame(pd.DataFrame({"item_id": ids, "lat": 1.0, "lon": 2.0, "state": "S", "county": "C", "town": "T",
                                                "category_l1": None, "category_l2": "x", "brand": None}).astype({"category_l1": object, "brand": object}),
                                  "item_id STRING, lat DOUBLE, lon DOUBLE, state STRING, county STRING, town STRING, category_l1 STRING, category_l2 STRING, brand STRING")
    embs = spark.createDataFrame(pd.DataFrame({"item_id": ids, "model_version": "v", "embedding_f32": encode_f32(emb)}))

    sample = job.fit_sample_frame(items.repartition(4), n, k, seed=23)
    hashes = {r["item_id"]: r["h"] for r in items.select("item_id", F.xxhash64(F.lit(23), "item_id").alias("h")).collect()}
    want = sorted(sorted(hashes, key=lambda i: (hashes[i], i))[:k])  # brute force: the k smallest hashes
    assert sorted(r[0] for r in sample.select("item_id").collect()) == want
    assert sorted(r[0] for r in job.fit_sample_frame(items.repartition(2), n, k, seed=23).select("item_id").collect()) == want
    assert sorted(r[0] for r in job.fit_sample_frame(items, n, k, seed=24).select("item_id").collect()) != want
    assert job.fit_sample_frame(items, n, n, seed=23) is items  # the whole catalogue when it is not larger
    cond = job.fit_sample_condition(items, n, k, seed=23)  # a condition on item_id: the same items from the embeddings
    assert sorted(r[0] for r in embs.where(cond).select("item_id").collect()) == want
    assert job.fit_sample_condition(items, n, n, seed=23) is None

    monkeypatch.setattr(job, "MAX_CHUNK_BYTES", 10 * (4 * dim + 256))  # 10 rows per chunk: 4 chunks
    from lgsid.sid_store import udf_input

    pdf, got = job.read_sample(spark, udf_input(sample, embs, "v", broadcast_items=True), k, dim)
    assert pdf["item_id"].tolist() == want
    assert list(pdf.columns) == ["item_id", "lat", "lon", "state", "county", "town", "category_l1", "category_l2", "brand"]
    np.testing.assert_array_equal(got, emb[[ids.index(i) for i in want]])


def test_check_fit_sample_bad_values_name_the_key():
    from lgsid.config import load_config, replace

    with pytest.raises(ConfigError, match=r"tokenizer.fit_sample.*below the number of level-1 clusters"):
        load_config(None, ["tokenizer.codebook_sizes=[64, 8]", "tokenizer.fit_sample=63"])
    import lgsid.tokenizer.job as job

    cfg = replace(load_config(None), tokenizer={"codebook_sizes": [8, 4, 2], "items_per_prefix": 0.1, "fit_sample": 10})
    # the catalogue's 1,000 items need 10,000 prefixes: HGIT's level 1 doubles while the 10 sampled rows keep K_L / 4 per
    # cluster (4 x 10 / (2 K1) >= 2: 8 -> 16), then level 2 until 16 x K2 >= 10,000 (1,024); the sample must hold 1,024 codes
    with pytest.raises(ValidationError, match=r"^tokenizer.fit_sample=10 is below the largest codebook \(1024 codes; sizes \[16, 1024, 2\] for the catalogue's 1,000 items\)"):
        job.check_fit_sample(cfg, n_items=1000, dim=4, driver_bytes=1 << 30)
    assert job.check_fit_sample(cfg, n_items=9, dim=4, driver_bytes=1 << 30) == 9  # the whole (small) catalogue: no sample
    cfg = replace(load_config(None), tokenizer={"fit_sample": 100_000})
    # 100k x (24 x 384 + 1024) B = 1.0 GB > 512 MiB
    with pytest.raises(ValidationError, match=r"^tokenizer.fit_sample=100000: a fit on 100,000 items of dimension 384 needs about 0.95 GiB .*spark.driver.memory \(0.50 GiB\)"):
        job.check_fit_sample(cfg, n_items=10**6, dim=384, driver_bytes=512 << 20)
    assert job.check_fit_sample(cfg, n_items=1000, dim=384, driver_bytes=512 << 20) == 1000


# ------------------------------------------------------------------ the step


def test_tokenize_on_the_whole_catalogue_gives_the_in_memory_sids(spark, tmp_path):
    """fit_sample >= N: the step's sid_items (executor UDF + Spark suffixes) == the in-memory fit + dedup on the same rows."""
    from lgsid.steps import run_step
    from lgsid.tokenizer.job import fit_and_assign, tokenizer_metrics

    cfg = _cfg(tmp_path, fit_sample=1000)
    store, items, emb = _write_catalogue(spark, cfg, 180, 16)
    summary = run_step("tokenize", spark, cfg)
    assert summary.metrics["fit_items"] == 180
    pdf = items.sort_values("item_id", kind="stable").reset_index(drop=True).copy()
    pdf["embedding"] = list(emb[np.argsort(items["item_id"].to_numpy(), kind="stable")])
    tok, ref_emb, codes, suffix, _ = fit_and_assign(cfg, pdf, progress=False)
    got = store.read("sid_items").toPandas().sort_values("item_id").reset_index(drop=True)
    assert got["item_id"].tolist() == pdf["item_id"].tolist()
    np.testing.assert_array_equal(got[["sid_l1", "sid_l2", "sid_l3"]].to_numpy(dtype=np.int64), codes)
    np.testing.assert_array_equal(got["sid_suffix"].to_numpy(), suffix)
    want = tokenizer_metrics(cfg, tok, ref_emb, pdf, codes)
    for k in ("usage_l1", "collision_rate", "category_purity_l1", "geo_C_at_10", "perplexity_l1"):
        assert summary.metrics[k] == pytest.approx(want[k], rel=1e-9), k


def test_tokenize_over_the_driver_memory_fails_before_writing(spark, tmp_path):
    from mlflow import MlflowClient

    from lgsid.steps import run_step
    from lgsid.tracking import setup_mlflow

    cfg = _cfg(tmp_path, fit_sample=1000)
    store, _, _ = _write_catalogue(spark, cfg, 60, 16)
    jconf = spark.sparkContext._jsc.sc().conf()  # what the step reads as the driver's memory (the JVM's own heap is not resized)
    prev = jconf.getOption("spark.driver.memory")
    jconf.set("spark.driver.memory", "64k")
    try:
        with pytest.raises(ValidationError, match=r"^tokenizer.fit_sample=1000: a fit on 60 items of dimension 16 .*spark.driver.memory \(0.00 GiB\)"):
            run_step("tokenize", spark, cfg)
    finally:
        if prev.isDefined():
            jconf.set("spark.driver.memory", prev.get())
        else:
            jconf.remove("spark.driver.memory")
    assert not store.exists("sid_items")
    setup_mlflow(cfg)
    assert MlflowClient().search_model_versions(f"name='{cfg.mlflow.sid_model_name}'") == []


def test_tokenize_and_write_sids_never_collect_the_embeddings(spark, tmp_path):
    """The driver guard: with spark.driver.maxResultSize (1 MiB) below the embeddings' size, tokenize on a
    sample, write-sids and evaluate's reads complete, while collecting the embeddings fails."""
    from lgsid.config import replace
    from lgsid.evaluate.io import load_inputs
    from lgsid.steps import run_step

    n, dim = 1200, 384  # 1.8 MB of float32 vectors (x 2: embedding + embedding_f32)
    cfg = _cfg(tmp_path, fit_sample=400, codebook_sizes=[8, 4, 4])
    store, _, _ = _write_catalogue(spark, cfg, n, dim)
    jconf = spark.sparkContext._jsc.sc().conf()  # the SparkContext's live conf: each new task set reads maxResultSize from it
    prev = jconf.getOption("spark.driver.maxResultSize")
    jconf.set("spark.driver.maxResultSize", "1m")
    try:
        with pytest.raises(Exception, match="maxResultSize"):  # the guard is armed
            store.read("item_embeddings").select("embedding_f32").collect()
        summary = run_step("tokenize", spark, cfg)
        assert summary.metrics["fit_items"] == 400
        run_step("write-sids", spark, cfg)
        # evaluate's reads: the embeddings stream back in chunks, with and without the item cap
        for cap, want in ((400, 400), (0, n)):
            inp = load_inputs(store, replace(cfg, evaluate={"max_items": cap}), [])
            assert len(inp.items) == want and inp.embeddings["reference"].shape == (want, dim)
    finally:
        if prev.isDefined():
            jconf.set("spark.driver.maxResultSize", prev.get())
        else:
            jconf.remove("spark.driver.maxResultSize")
    assert store.read("sid_items").count() == n
    feats = store.read("item_sid_features").toPandas()
    assert len(feats) == n and feats["sid"].is_unique
