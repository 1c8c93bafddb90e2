"""write-sids: the registered SID model as a Spark UDF, suffixes without renumbering, MERGE semantics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lgsid.errors import ValidationError

pytestmark = pytest.mark.spark

N, DIM = 160, 16


def _cfg(root):
    from lgsid.config import load_config, replace

    return replace(
        load_config(None),
        storage={"root": str(root / "tables"), "staging_dir": str(root / "staging")},
        spark={"petastorm_cache_dir": str(root / "petastorm"), "shuffle_partitions": 1},
        mlflow={"tracking_uri": f"sqlite:///{root}/mlflow.db", "artifact_root": str(root / "mlartifacts")},
        tokenizer={"codebook_sizes": [6, 3, 2], "epochs": 2, "batch_size": 64, "geo_coverage_sample": 100, "bootstrap_champion": True},
        promote={"max_collision_rate": 1.0, "min_usage_l1": 0.1},
        sid_store={"batch_size": 64},
    )


def _embeddings_frame(items: pd.DataFrame, emb: np.ndarray, version: str = "reference") -> pd.DataFrame:
    from lgsid.embedding_f32 import encode_f32

    return pd.DataFrame({
        "item_id": items["item_id"].to_numpy(), "model_name": "toy", "model_version": version,
        "embedding": list(emb), "dim": emb.shape[1], "created_at": pd.Timestamp("2026-01-01", tz="UTC"),
        "embedding_f32": encode_f32(emb), "input_sha": "toy",
    })


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    """Items + embeddings in Delta, one tokenize run (version 1 registered and promoted to champion)."""
    from lgsid.steps import run_step
    from lgsid.storage import DeltaStore
    from lgsid.tokenizer.toy import toy_catalogue

    cfg = _cfg(tmp_path_factory.mktemp("sidstore"))
    store = DeltaStore(spark, cfg.storage)
    items, emb = toy_catalogue(N + 40, DIM, seed=11)
    base_items, base_emb = items.iloc[:N].reset_index(drop=True), emb[:N]
    store.write(spark.createDataFrame(base_items), "items")
    store.write(spark.createDataFrame(_embeddings_frame(base_items, base_emb)), "item_embeddings")
    summary = run_step("tokenize", spark, cfg)
    assert summary.metrics["sid_model_version"] == "1"
    return {"cfg": cfg, "store": store, "items": items, "emb": emb}


def test_udf_output_equals_in_process_assignment(spark, world):
    """The UDF (binary fast path, positional arguments, coalesced) gives the in-process codes for every item."""
    import mlflow

    from lgsid.sid_store import apply_sid_udf, model_uri, udf_input
    from lgsid.tracking import setup_mlflow

    cfg, store = world["cfg"], world["store"]
    setup_mlflow(cfg)
    df = udf_input(store.read("items"), store.read("item_embeddings"), "reference")
    assert "embedding_f32" in df.columns and len(df.columns) == 10
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "48")  # several batches, a short last one
    try:
        got = apply_sid_udf(spark, df.repartition(3), model_uri(cfg), partitions=2).select("item_id", "sid_l1", "sid_l2", "sid_l3", "sid_path").toPandas()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    got = got.sort_values("item_id").reset_index(drop=True)
    model = mlflow.pyfunc.load_model(model_uri(cfg)).unwrap_python_model()
    items = world["items"].iloc[:N]
    want = model.tokenizer.encode(world["emb"][:N], items)  # in-process, same rows, no Spark
    assert got["item_id"].tolist() == items["item_id"].tolist()
    np.testing.assert_array_equal(got[["sid_l1", "sid_l2", "sid_l3"]].to_numpy(dtype=np.int64), want)
    assert got["sid_path"].tolist() == [model.l1_paths[c] for c in want[:, 0]]
    # the codes the tokenize step stored in sid_items are the same assignment
    si = store.read("sid_items").toPandas().sort_values("item_id")
    np.testing.assert_array_equal(si[["sid_l1", "sid_l2", "sid_l3"]].to_numpy(dtype=np.int64), want)


def test_assign_suffixes_never_renumbers_and_paths_follow_the_kept_codes(spark):
    from lgsid.sid_store import assign_suffixes

    existing = spark.createDataFrame(
        [("1", "1-2-3-0", "a", 1, 2, 3, 0), ("1", "1-2-3-3", "b", 1, 2, 3, 3)],
        "sid_model_version STRING, sid STRING, item_id STRING, sid_l1 INT, sid_l2 INT, sid_l3 INT, sid_suffix INT",
    )
    assigned = spark.createDataFrame(
        [("a", 9, 9, 9), ("b", 1, 2, 3), ("d", 1, 2, 3), ("c", 1, 2, 3), ("e", 4, 4, 4)],
        "item_id STRING, sid_l1 INT, sid_l2 INT, sid_l3 INT",
    )
    paths = spark.createDataFrame([(k, f"path-{k}") for k in range(10)], "sid_l1 INT, sid_path STRING")
    out = {r["item_id"]: (r["sid"], r["sid_path"], r["is_new"]) for r in assign_suffixes(assigned, existing, paths).collect()}
    assert out == {
        # existing item keeps its stored SID even if the UDF now says 9-9-9, and the path of its stored level-1 code
        # (before the fix it kept 1-2-3-0 but took the path of 9)
        "a": ("1-2-3-0", "path-1", False),
        "b": ("1-2-3-3", "path-1", False),
        "c": ("1-2-3-4", "path-1", True),  # new colliders continue after the existing maximum (3), by item_id
        "d": ("1-2-3-5", "path-1", True),
        "e": ("4-4-4-0", "path-4", True),
    }


def test_write_sids_merge_lifecycle(spark, world):
    from pyspark.sql import functions as F

    from lgsid.steps import run_step

    cfg, store, items, emb = world["cfg"], world["store"], world["items"], world["emb"]

    # 1. first run: every item inserted once, SIDs = sid_items of the champion version
    s1 = run_step("write-sids", spark, cfg)
    assert s1.metrics == {"items": N, "new_items": 0, "rows_merged": N}
    assert "column embedding_f32)" in s1.notes[0]  # the binary fast path fed the UDF
    v1 = store.version("item_sid_features")
    first = store.read("item_sid_features").toPandas().set_index("item_id").sort_index()
    assert len(first) == N and first.index.is_unique
    si = store.read("sid_items").toPandas().set_index("item_id").sort_index()
    assert (first["sid"] == si["sid"]).all() and (first["sid_model_version"] == "1").all()
    assert first["sid"].is_unique

    # sid_health: one row per level of version 1, equal to the in-memory health of the same codes; no churn yet
    from lgsid.tokenizer import codebook_health

    health = store.read("sid_health").toPandas().sort_values("level")
    codes = first[["sid_l1", "sid_l2", "sid_l3"]].to_numpy(dtype=np.int64)
    sizes = health["codebook_size"].tolist()
    want = codebook_health(codes, sizes)
    assert health["sid_model_version"].tolist() == ["1"] * 3 and health["items"].tolist() == [N] * 3
    np.testing.assert_allclose(health["usage"], [want[f"usage_l{l}"] for l in (1, 2, 3)])
    np.testing.assert_allclose(health["perplexity"], [want[f"perplexity_l{l}"] for l in (1, 2, 3)])
    assert health["collision_rate"].iloc[2] == pytest.approx(want["collision_rate"])
    assert health["churn"].isna().all() and health["previous_sid_model_version"].isna().all()
    h1 = store.version("sid_health")
    from mlflow import MlflowClient

    run_id = MlflowClient().get_model_version(cfg.mlflow.sid_model_name, "1").run_id
    assert [a.path for a in MlflowClient().list_artifacts(run_id, "sid_health")] == ["sid_health/sid_health.png"]

    # 2. rerun: idempotent, no commit
    s2 = run_step("write-sids", spark, cfg)
    assert s2.metrics["rows_merged"] == 0 and store.version("item_sid_features") == v1
    assert store.version("sid_health") == h1 and "sid_health already holds version 1: nothing committed" in s2.notes

    # 3. matched rows update: corrupt one row, the next run puts it back and touches nothing else
    victim = first.index[0]
    bad = store.read("item_sid_features").where(F.col("item_id") == victim).withColumn("sid", F.lit("0-0-0-999"))
    store.merge(bad, "item_sid_features")
    s3 = run_step("write-sids", spark, cfg)
    assert s3.metrics["rows_merged"] == 1
    third = store.read("item_sid_features").toPandas().set_index("item_id").sort_index()
    assert (third["sid"] == first["sid"]).all()
    assert (third.drop(index=victim)["updated_at"] == first.drop(index=victim)["updated_at"]).all()

    # 4. new items, some exact duplicates of existing ones (they must collide): existing SIDs unchanged
    new_items = items.iloc[N:].copy().reset_index(drop=True)
    new_emb = emb[N:].copy()
    dup_src = [0, 1, 2]
    for j, i in enumerate(dup_src):
        keep_id = new_items.loc[j, "item_id"]
        new_items.loc[j] = items.iloc[i]
        new_items.loc[j, "item_id"] = keep_id
        new_emb[j] = emb[i]
    store.write(spark.createDataFrame(new_items), "items", mode="append")
    store.write(spark.createDataFrame(_embeddings_frame(new_items, new_emb)), "item_embeddings", mode="append")
    s4 = run_step("write-sids", spark, cfg)
    assert s4.metrics["new_items"] == len(new_items) and s4.metrics["rows_merged"] == len(new_items)
    fourth = store.read("item_sid_features").toPandas().set_index("item_id").sort_index()
    assert len(fourth) == N + len(new_items) and fourth.index.is_unique and fourth["sid"].is_unique
    assert (fourth.loc[first.index, "sid"] == first["sid"]).all()  # no existing SID changed, suffixes included
    for j, i in enumerate(dup_src):
        old_sid = first.loc[items.iloc[i]["item_id"], "sid"]
        new_sid = fourth.loc[new_items.loc[j, "item_id"], "sid"]
        assert new_sid.rsplit("-", 1)[0] == old_sid.rsplit("-", 1)[0]  # same codes ...
        assert int(new_sid.rsplit("-", 1)[1]) > int(old_sid.rsplit("-", 1)[1])  # ... next free suffix
    si4 = store.read("sid_items").toPandas()
    assert len(si4) == N + len(new_items) and si4["sid"].is_unique

    # 5. Delta history keeps the earlier snapshot for point-in-time joins
    assert store.read("item_sid_features", version=v1).count() == N


def test_missing_embedding_fails_naming_item_and_writes_nothing(spark, world):
    from lgsid.steps import run_step

    cfg, store, items = world["cfg"], world["store"], world["items"]
    before = {t: store.version(t) for t in ("item_sid_features", "sid_items") if store.exists(t)}
    orphan = items.iloc[[5]].copy()
    orphan["item_id"] = "item_without_embedding"
    store.write(spark.createDataFrame(orphan), "items", mode="append")
    try:
        with pytest.raises(ValidationError, match=r"\['item_without_embedding'\] has no embedding \(no item_embeddings row of model_version 'reference'; run `lgsid embed`\)"):
            run_step("write-sids", spark, cfg)
        assert {t: store.version(t) for t in before} == before
    finally:
        from pyspark.sql import functions as F

        store.write(store.read("items").where(F.col("item_id") != "item_without_embedding").localCheckpoint(), "items")


def _check_frames(spark, rows, emb_rows):
    items = spark.createDataFrame(rows, "item_id STRING, lat DOUBLE, lon DOUBLE, state STRING, county STRING, town STRING, "
                                        "category_l1 STRING, category_l2 STRING, brand STRING")
    emb = spark.createDataFrame(emb_rows, "item_id STRING, model_version STRING, embedding ARRAY<FLOAT>, embedding_f32 BINARY")
    return items, emb


def test_bad_dimension_and_null_coordinates_are_named(spark):
    from lgsid.embedding_f32 import encode_f32
    from lgsid.sid_store import check_udf_input

    row = {"item_id": "x1", "lat": 30.0, "lon": -97.0, "state": "Texas", "county": "Travis", "town": "Austin",
           "category_l1": "Food", "category_l2": "BBQ", "brand": None}

    def emb(item_id, d, version="reference"):
        return (item_id, version, [0.1] * d, encode_f32(np.full((1, d), 0.1))[0])

    items, embs = _check_frames(spark, [row, {**row, "item_id": "x2"}], [emb("x1", 5), emb("x2", 4)])
    check_udf_input(items.where("item_id = 'x1'"), embs, "reference", 5)  # passes
    with pytest.raises(ValidationError, match=r"\['x2'\] has an embedding whose dimension differs from the model's 5 \(column 'embedding_f32' must hold 20 bytes"):
        check_udf_input(items, embs, "reference", 5)
    # an embedding of another model version does not count
    items, embs = _check_frames(spark, [row, {**row, "item_id": "x2"}], [emb("x1", 5), emb("x2", 5, "aligned-1")])
    with pytest.raises(ValidationError, match=r"\['x2'\] has no embedding \(no item_embeddings row of model_version 'reference'"):
        check_udf_input(items, embs, "reference", 5)
    items, embs = _check_frames(spark, [row, {**row, "item_id": "x3", "lon": None}], [emb("x1", 5), emb("x3", 5)])
    with pytest.raises(ValidationError, match=r"\['x3'\] has a null coordinate \(column 'lon'\)"):
        check_udf_input(items, embs, "reference", 5)
    # an aligned version's missing row names the embed command of that version
    items, embs = _check_frames(spark, [row, {**row, "item_id": "x2"}], [emb("x1", 5, "aligned-2")])
    with pytest.raises(ValidationError, match=r"\['x2'\] has no embedding .*run `lgsid embed --set encoder.embed_version=aligned-2`"):
        check_udf_input(items, embs, "aligned-2", 5)


def test_udf_arguments_follow_the_model_signature(spark):
    from lgsid.serving.sid_model import signature
    from lgsid.sid_store import udf_arguments

    # positional arguments in signature order, up to the embedding column
    cols = ["item_id", "lat", "lon", "state", "county", "town", "category_l1", "category_l2", "brand", "embedding_f32"]
    args = udf_arguments(signature(16).inputs, cols)
    assert [str(a) for a in args] == [f"Column<'{c}'>" for c in
                                      ("lat", "lon", "state", "county", "town", "category_l2", "item_id", "category_l1", "brand", "embedding_f32")]
    # an optional input the frame lacks is a typed null literal in its place
    no_brand = udf_arguments(signature(16).inputs, [c for c in cols if c != "brand"])
    nulls = spark.range(1).select(no_brand[8].alias("brand"))
    assert nulls.schema.fields[0].dataType.simpleString() == "string" and nulls.first()["brand"] is None
    assert [str(a) for a in no_brand][-1] == "Column<'embedding_f32'>" and len(no_brand) == 10
    with pytest.raises(ValidationError, match=r"requires input column 'town', which the UDF input lacks"):
        udf_arguments(signature(16).inputs, [c for c in cols if c != "town"])
    from mlflow.types.schema import ColSpec, Schema

    with pytest.raises(ValidationError, match=r"signature has no input 'embedding_f32'"):
        udf_arguments(Schema([ColSpec("double", "lat")]), cols)


def _versions(cfg):
    from mlflow import MlflowClient

    return sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name = '{cfg.mlflow.sid_model_name}'"))


@pytest.fixture()
def two_versions(spark, tmp_path):
    """Version 1 (champion, bootstrapped) and version 2 (candidate; another codebook, so other codes) of one world.

    On the way it checks the tokenize rerun: same config + same input table versions -> no fit, no
    new model version, no sid_items commit.
    """
    from mlflow import MlflowClient

    from lgsid.config import replace
    from lgsid.fingerprint import TAG
    from lgsid.steps import run_step
    from lgsid.storage import DeltaStore
    from lgsid.tokenizer.toy import toy_catalogue

    cfg = _cfg(tmp_path)
    store = DeltaStore(spark, cfg.storage)
    all_items, all_emb = toy_catalogue(N + 40, DIM, seed=12)
    items, emb = all_items.iloc[:N].reset_index(drop=True), all_emb[:N]
    store.write(spark.createDataFrame(items), "items")
    store.write(spark.createDataFrame(_embeddings_frame(items, emb)), "item_embeddings")
    assert run_step("tokenize", spark, cfg).metrics["sid_model_version"] == "1"
    fp = MlflowClient().get_model_version(cfg.mlflow.sid_model_name, "1").tags[TAG]
    si_version = store.version("sid_items")
    rerun = run_step("tokenize", spark, cfg)
    assert rerun.metrics["sid_model_version"] == "1" and rerun.tables == [] and "usage_l1" in rerun.metrics
    assert rerun.notes[0].startswith(f"inputs and config unchanged (fingerprint {fp}): reused {cfg.mlflow.sid_model_name} version 1")
    assert _versions(cfg) == [1] and store.version("sid_items") == si_version
    other = replace(cfg, tokenizer={"codebook_sizes": [5, 3, 2]})  # a config change: new fingerprint -> new version
    s2 = run_step("tokenize", spark, other)
    assert s2.metrics["sid_model_version"] == "2" and _versions(cfg) == [1, 2]
    # renumbered to the champion where the shapes allow: K_1 5 vs 6 cannot be, the shared level 2 (3 codes) is
    assert any(n.startswith("codes aligned to champion version 1: level 1: not aligned (shape changed); level 2: ")
               and n.endswith("level 3: not aligned (shape changed)") for n in s2.notes), s2.notes
    return cfg, store, all_items.iloc[N:].reset_index(drop=True), all_emb[N:]


def test_promotion_during_write_sids_cannot_split_version_and_codes(spark, two_versions, monkeypatch):
    """The alias is resolved once: champion moving to v2 after resolution still applies v1 and labels the rows v1.

    New items (not in sid_items of v1) get their codes from the applied model, so applying v2 while
    writing "v1" would show in their codes and paths.
    """
    import mlflow
    from mlflow import MlflowClient

    import lgsid.steps.write_sids as write_sids
    from lgsid.registry import version_by_alias
    from lgsid.steps import run_step

    cfg, store, new_items, new_emb = two_versions
    name = cfg.mlflow.sid_model_name
    store.write(spark.createDataFrame(new_items), "items", mode="append")
    store.write(spark.createDataFrame(_embeddings_frame(new_items, new_emb)), "item_embeddings", mode="append")
    models = {v: mlflow.pyfunc.load_model(f"models:/{name}/{v}").unwrap_python_model() for v in ("1", "2")}
    want = {v: m.tokenizer.encode(new_emb, new_items) for v, m in models.items()}  # in-process codes of the new items
    assert (want["1"][:, :2] != want["2"][:, :2]).any()  # the two versions really disagree, so a mix-up would show
    resolve = write_sids.resolve_model_version

    def resolve_then_promote(c):
        mv = resolve(c)
        MlflowClient().set_registered_model_alias(name, "champion", "2")  # a promotion lands right after resolution
        return mv

    monkeypatch.setattr(write_sids, "resolve_model_version", resolve_then_promote)
    s = run_step("write-sids", spark, cfg)
    assert f"applied models:/{name}/1 (models:/{name}@champion resolved once" in s.notes[0]
    assert str(version_by_alias(cfg, "champion").version) == "2"
    assert s.metrics["new_items"] == len(new_items)
    for v in ("1", "2"):
        feats = store.read("item_sid_features").toPandas().set_index("item_id")
        assert (feats["sid_model_version"] == v).all()
        got = feats.loc[new_items["item_id"]]
        np.testing.assert_array_equal(got[["sid_l1", "sid_l2", "sid_l3"]].to_numpy(dtype=np.int64), want[v])  # codes of the version the rows name
        assert got["sid_path"].tolist() == [models[v].l1_paths[c] for c in want[v][:, 0]]
        if v == "1":
            monkeypatch.undo()
            assert run_step("write-sids", spark, cfg).metrics["rows_merged"] == N + len(new_items)  # next run: the new champion

    # sid_health of version 2: churn against version 1 on the items both coded (numpy on the same codes)
    from lgsid.sid_churn import prefix_churn

    si = store.read("sid_items").toPandas()
    old = si[si["sid_model_version"] == "1"].set_index("item_id")
    new = store.read("item_sid_features").toPandas().set_index("item_id").loc[old.index]
    cols = ["sid_l1", "sid_l2", "sid_l3"]
    health = store.read("sid_health").toPandas().sort_values(["sid_model_version", "level"])
    h2 = health[health["sid_model_version"] == "2"]
    assert health["sid_model_version"].tolist() == ["1"] * 3 + ["2"] * 3 and h2["codebook_size"].tolist() == [5, 3, 2]
    np.testing.assert_allclose(h2["churn"], prefix_churn(old[cols].to_numpy(np.int64), new[cols].to_numpy(np.int64)))
    assert h2["previous_sid_model_version"].tolist() == ["1"] * 3 and h2["churn_items"].tolist() == [len(old)] * 3 == [N + len(new_items)] * 3
