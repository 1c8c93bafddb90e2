"""End to end on a few hundred toy items: reward -> G-DPO (Petastorm, CPU, 2 steps) -> MLflow -> embeddings,
and the rerun semantics of reward / gdpo / embed (unchanged inputs: nothing trained, registered or rewritten).

The input tables are built by hand (DeltaStore.write, catalogue schemas): items in real US towns of
a handful of states, reward lists sorted near -> far with Eq. 3 labels, co-click and
geo-constrained pairs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lgsid.config import replace
from lgsid.embedding_f32 import decode_f32
from lgsid.errors import ValidationError
from lgsid.geo import haversine_km

pytestmark = pytest.mark.spark

TOWNS = [  # (state, county, town, lat, lon)
    ("Texas", "Travis County", "Austin", 30.267, -97.743),
    ("Texas", "Harris County", "Houston", 29.760, -95.370),
    ("Texas", "Dallas County", "Dallas", 32.777, -96.797),
    ("California", "Alameda County", "Oakland", 37.804, -122.271),
    ("California", "Los Angeles County", "Pasadena", 34.148, -118.144),
    ("New York", "Erie County", "Buffalo", 42.886, -78.878),
    ("New York", "Kings County", "Brooklyn", 40.678, -73.944),
    ("Illinois", "Cook County", "Chicago", 41.878, -87.630),
    ("Illinois", "Sangamon County", "Springfield", 39.781, -89.650),
]
CATS = [("Food", "Pizza"), ("Food", "Coffee"), ("Shopping", "Hardware"), ("Services", "Laundry"), ("Food", "Tacos")]
BRANDS = ["Joe's", "Blue Bottle", "Ace", "Sparkle", "El Sol", "Corner"]


def toy_prompts(n: int = 180, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        st, co, tw, lat, lon = TOWNS[i % len(TOWNS)]
        c1, c2 = CATS[rng.integers(len(CATS))]
        brand = BRANDS[rng.integers(len(BRANDS))]
        content = f"{brand} {c2} #{i} ({brand}), {c1} / {c2}, price {int(rng.integers(5, 60))}"
        loc = f"located in {tw}, {co}, {st}"
        rows.append(dict(item_id=f"i{i:04d}", content_text=content, location_text=loc, prompt=f"{content}; {loc}",
                         state=st, county=co, town=tw, lat=lat + rng.normal(0, 0.03), lon=lon + rng.normal(0, 0.03)))
    return pd.DataFrame(rows)


def _km(a, b) -> float:
    """Haversine km between two rows with ``lat``/``lon``."""
    return float(haversine_km(a.lat, a.lon, b.lat, b.lon))


def toy_lists_and_pairs(p: pd.DataFrame, k: int = 4, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    from lgsid.reward import soft_labels

    rng = np.random.default_rng(seed)
    rows = list(p.itertuples())
    lists, pairs = [], []
    for a in rows:
        others = [b for b in rows if b.item_id != a.item_id]
        cand = [others[j] for j in rng.choice(len(others), size=k, replace=False)]
        d = [_km(a, b) for b in cand]
        order = np.argsort(d)
        lists.append(dict(
            item_id=a.item_id, content_text=a.content_text,
            prompts=[a.prompt] + [f"{a.content_text}; {cand[j].location_text}" for j in order],
            ranks=list(range(k + 1)), distance_km=[0.0] + [float(d[j]) for j in order],
            soft_labels=soft_labels(np.arange(k + 1), k).tolist(),
        ))
        same_town = [b for b in others if b.town == a.town]
        far = [b for b in others if b.state != a.state]
        b = same_town[rng.integers(len(same_town))]
        pairs.append(dict(anchor_item_id=a.item_id, other_item_id=b.item_id, pair_type="co_click", cooccur_users=2, distance_km=_km(a, b)))
        f = far[rng.integers(len(far))]
        pairs.append(dict(anchor_item_id=a.item_id, other_item_id=f.item_id, pair_type="geo_constrained", cooccur_users=0, distance_km=_km(a, f)))
    return pd.DataFrame(lists), pd.DataFrame(pairs)


@pytest.fixture
def tiny_cfg(cfg):
    return replace(
        cfg,
        encoder={"max_length": 32, "batch_size": 32, "cpu_bf16": "off"},  # float32: the round trip is checked at 1e-4
        reward={"epochs": 3, "max_anchors": 40, "hidden_sizes": [32]},
        negatives={"k": 4, "n_far": 1},
        gdpo={"max_steps": 2, "batch_size": 4},
        train={"checkpoint_every": 1, "shuffle_buffer": 16},
    )


def write_toy_tables(spark, store, n: int = 180) -> pd.DataFrame:
    """Write toy geo_prompts, reward_lists and gdpo_pairs of ``n`` items; returns the prompts."""
    p = toy_prompts(n)
    lists, pairs = toy_lists_and_pairs(p)
    store.write(spark.createDataFrame(p), "geo_prompts")
    store.write(spark.createDataFrame(lists), "reward_lists")
    store.write(spark.createDataFrame(pairs), "gdpo_pairs")
    return p


@pytest.fixture
def toy_tables(spark, store):
    return write_toy_tables(spark, store)


def test_reward_gdpo_mlflow_roundtrip(spark, store, tiny_cfg, toy_tables):
    import mlflow

    from lgsid import gdpo
    from lgsid.steps import gdpo as gdpo_step, reward as reward_step

    rs = reward_step.run(spark, tiny_cfg)
    assert rs.metrics["n_train_lists"] == 32  # 40 anchors, 20 % held out
    assert 0.0 <= rs.metrics["val_ndcg"] <= 1.0

    gs = gdpo_step.run(spark, tiny_cfg)
    assert gs.metrics["steps"] == 2
    assert gs.metrics["aligned_version"] == "aligned-1"
    for m in ("P@10", "C@10", "T@10"):
        assert 0.0 <= gs.metrics[f"geo_after.{m}"] <= 1.0

    # item_embeddings holds the reference and the registered aligned version for every item
    emb = store.read("item_embeddings").select("item_id", "model_version", "dim").toPandas()
    assert emb.groupby("model_version").size().to_dict() == {"aligned-1": 180, "reference": 180}
    assert set(emb["dim"]) == {384}

    # the run has per-step losses, reward metrics, the geo check, artifacts and plots
    client = mlflow.MlflowClient()
    run = client.get_run(mlflow.search_runs(filter_string="tags.`lgsid.stage` = 'gdpo'", output_format="list")[0].info.run_id)
    assert len(client.get_metric_history(run.info.run_id, "l_align")) == 2
    assert {"reward.val_ndcg", "geo_before.C_at_10", "geo_after.C_at_10"} <= set(run.data.metrics)
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"adapter", "reward_model", "plots", "config"} <= arts
    adapter_files = {a.path.split("/")[-1] for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert {"adapter_config.json", "tokenizer.json"} <= adapter_files
    plots = {a.path.split("/")[-1] for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"gdpo_loss.png", "embeddings_pca_by_state.png"}

    # the registered pyfunc loads back and embeds like the aligned rows in the table
    model = mlflow.pyfunc.load_model(f"models:/{tiny_cfg.mlflow.encoder_model_name}/1")
    out = np.asarray(model.predict(pd.DataFrame({"prompt": toy_tables["prompt"].head(3).tolist()})))
    assert out.shape == (3, 384)
    table = store.read("item_embeddings").toPandas()
    # embedding_f32 (the SID UDF's input) holds the same vectors as embedding, as float32 bytes
    np.testing.assert_array_equal(decode_f32(table["embedding_f32"], 384), np.stack(table["embedding"].to_numpy()).astype(np.float32))
    aligned = table[table.model_version == "aligned-1"].set_index("item_id").loc[toy_tables["item_id"].head(3), "embedding"]
    np.testing.assert_allclose(out, np.stack(aligned.to_numpy()), atol=1e-4)

    # the embed step finds the newest registered adapter (from its model URI); rerunning writes nothing
    from lgsid.steps import embed as embed_step

    before = _table(store)
    v_before = store.version("item_embeddings")
    es = embed_step.run(spark, replace(tiny_cfg, encoder={"embed_version": "aligned"}))
    assert es.metrics["model_version"] == "aligned-1"
    assert es.tables[0].rows == 360 and es.tables[0].version == v_before

    # gdpo read the reward model from the reward run's artifact, not from a local folder
    reward_run = mlflow.search_runs(filter_string="tags.`lgsid.stage` = 'reward'", output_format="list")
    assert len(reward_run) == 1
    assert f"runs:/{reward_run[0].info.run_id}/reward_model" in gs.notes[1]
    assert run.data.params["gdpo.reward_run_id"] == reward_run[0].info.run_id
    assert run.data.params["gdpo.reward_conditioning"] == "none"  # Eq. 2, the code default

    # reruns on unchanged inputs: reward reuses its run, gdpo registers nothing, the table is identical
    rs2 = reward_step.run(spark, tiny_cfg)
    assert "reusing mlflow run " + reward_run[0].info.run_id in rs2.notes[0]
    assert rs2.metrics["val_ndcg"] == pytest.approx(rs.metrics["val_ndcg"])
    gs2 = gdpo_step.run(spark, tiny_cfg)
    assert gs2.metrics == {"steps": 0, "aligned_version": "aligned-1"} and gs2.tables == []
    assert "nothing trained or registered" in gs2.notes[0]
    assert len(client.search_model_versions(f"name='{tiny_cfg.mlflow.encoder_model_name}'")) == 1
    assert len(mlflow.search_runs(filter_string="tags.`lgsid.stage` = 'reward'", output_format="list")) == 1
    assert store.version("item_embeddings") == v_before
    pd.testing.assert_frame_equal(_table(store), before)

    # what the fingerprint covers: a changed gdpo setting or a new table version is a new fingerprint;
    # where checkpoints go is not
    rid = reward_run[0].info.run_id
    fp = gdpo.input_fingerprint(spark, tiny_cfg, rid)
    assert client.get_model_version(tiny_cfg.mlflow.encoder_model_name, "1").tags["lgsid.input_fingerprint"] == fp
    assert gdpo.input_fingerprint(spark, replace(tiny_cfg, gdpo={"lr": 1e-4}), rid) != fp
    assert gdpo.input_fingerprint(spark, replace(tiny_cfg, train={"checkpoint_dir": "s3a://elsewhere/ck"}), rid) == fp
    store.write(spark.createDataFrame(toy_tables), "geo_prompts")  # a re-ingest, even of the same rows
    assert gdpo.input_fingerprint(spark, tiny_cfg, rid) != fp


def _table(store) -> pd.DataFrame:
    """item_embeddings, every column, in key order (embeddings as tuples so frames compare)."""
    t = store.read("item_embeddings").toPandas().sort_values(["model_version", "item_id"]).reset_index(drop=True)
    t["embedding"] = t["embedding"].map(tuple)
    return t


def test_embed_rerun_keeps_unchanged_rows_and_created_at(spark, store, tiny_cfg, toy_tables):
    """Under bf16 (CUDA, or CPU with encoder.cpu_bf16) a recomputed vector moves by ~5e-4 with the batch
    it was padded in, so "unchanged" must be decided by the input (input_sha), not by re-embedding."""
    from lgsid.steps import embed as embed_step

    tiny_cfg = replace(tiny_cfg, encoder={"cpu_bf16": "on"})
    small = toy_tables.head(12)
    store.write(spark.createDataFrame(small), "geo_prompts")
    first = embed_step.run(spark, tiny_cfg)
    assert first.tables[0].rows == 12
    before = _table(store)
    v = store.version("item_embeddings")

    again = embed_step.run(spark, tiny_cfg)  # unchanged inputs: no write, identical content (created_at included)
    assert again.tables[0].version == v
    pd.testing.assert_frame_equal(_table(store), before)

    # one prompt changes and one item is added: only those two rows are written
    changed = small.copy()
    changed.loc[0, "prompt"] = "Corner Laundry; located in Buffalo, Erie County, New York"
    changed = pd.concat([changed, toy_tables.iloc[[12]]], ignore_index=True)
    store.write(spark.createDataFrame(changed), "geo_prompts")
    third = embed_step.run(spark, tiny_cfg)
    assert third.tables[0].version == v + 1 and third.tables[0].rows == 13
    after = _table(store).set_index("item_id")
    old = before.set_index("item_id")
    same = [i for i in old.index if i != "i0000"]
    pd.testing.assert_frame_equal(after.loc[same], old.loc[same])
    assert after.loc["i0000", "embedding"] != old.loc["i0000", "embedding"]
    assert after.loc["i0000", "created_at"] > old.loc["i0000", "created_at"]
    assert "i0012" in after.index
    assert after["input_sha"].notna().all() and after.loc["i0000", "input_sha"] != old.loc["i0000", "input_sha"]


def test_geo_check_aligns_by_item_id_and_refreshes_a_stale_reference(spark, store, tiny_cfg, toy_tables):
    """After a re-ingest the reference lacks new items and rows come in another order: the before/after
    frames must still pair each item's embeddings with its own geography, and the reference is re-embedded."""
    from lgsid.embed import REFERENCE
    from lgsid.gdpo import coverage_frames, embed_missing

    p = toy_tables.head(10)
    store.write(spark.createDataFrame(p), "geo_prompts")

    def rows(version: str, ids: list[str]) -> pd.DataFrame:  # embedding[0] = item number, so a row names its item
        return pd.DataFrame({
            "item_id": ids, "model_name": "toy", "model_version": version,
            "embedding": [[float(int(i[1:])), 1.0] for i in ids], "dim": 2, "created_at": pd.Timestamp("2026-01-01"),
            "embedding_f32": [np.asarray([int(i[1:]), 1.0], np.float32).tobytes() for i in ids], "input_sha": "toy",
        })

    ids = p["item_id"].tolist()
    ref = rows(REFERENCE, ids[2:][::-1])  # stale: no row for the first two (re-ingested) items, reversed order
    aligned = rows("aligned-1", ids[::-1])
    store.write(spark.createDataFrame(pd.concat([ref, aligned], ignore_index=True)), "item_embeddings")

    item_ids, before, after, st, co, tw = coverage_frames(spark, tiny_cfg, REFERENCE, "aligned-1")
    assert item_ids.tolist() == ids[2:]
    geo = p.set_index("item_id").loc[item_ids]
    for arr in (before, after):
        assert arr[:, 0].tolist() == [float(int(i[1:])) for i in item_ids]  # each row is its item's embedding
    assert st.tolist() == geo["state"].tolist() and tw.tolist() == geo["town"].tolist() and co.tolist() == geo["county"].tolist()

    wr = embed_missing(spark, tiny_cfg, store, REFERENCE)  # the stale reference is re-embedded (real encoder)
    assert wr is not None
    assert embed_missing(spark, tiny_cfg, store, REFERENCE) is None  # now complete: nothing to do
    item_ids, before, after, *_ = coverage_frames(spark, tiny_cfg, REFERENCE, "aligned-1")
    assert item_ids.tolist() == ids and before.shape == (10, 384)
    # a hash sample: `sample` rows, in item_id order, the same subset every time, each row its item's
    sub_ids, sub_before, sub_after, *_ = coverage_frames(spark, tiny_cfg, REFERENCE, "aligned-1", sample=4)
    assert len(sub_ids) == 4 and set(sub_ids) <= set(ids) and sub_ids.tolist() == sorted(sub_ids)
    assert coverage_frames(spark, tiny_cfg, REFERENCE, "aligned-1", sample=4)[0].tolist() == sub_ids.tolist()
    np.testing.assert_array_equal(sub_after, after[[ids.index(i) for i in sub_ids]])


def test_same_seed_same_losses_and_resume(spark, store, tiny_cfg, toy_tables, tmp_path):
    from lgsid.gdpo import load_examples, train_in_process
    from lgsid.reward import RewardMLP

    import torch

    torch.manual_seed(0)
    reward = RewardMLP(384, [32]).requires_grad_(False)
    ex, n, counts = load_examples(spark, tiny_cfg)
    assert n == 360 and counts == {"co_click": 180, "geo_constrained": 180}

    def hist(ck: str, steps: int, resume: bool = False):
        c = replace(tiny_cfg, train={"checkpoint_dir": str(tmp_path / ck), "resume": resume}, gdpo={"max_steps": steps})
        _, res = train_in_process(ex, c, reward, n)
        return res

    a, b = hist("a", 2), hist("b", 2)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    _check_step0_loss(ex, tiny_cfg, a["history"][0])
    full = hist("c", 3)
    resumed = hist("a", 3, resume=True)  # continues the 2-step run in "a" from its checkpoint
    assert resumed["resumed_from"] == 2
    np.testing.assert_allclose([h["loss"] for h in resumed["history"]], [h["loss"] for h in full["history"]], rtol=1e-5)


def _check_step0_loss(ex, cfg, rec: dict) -> None:
    """docs/method.md: at step 0 the policy is the reference (LoRA's B starts at 0), so the DPO margin is 0,
    L_align = ln 2, and the loss is ln 2 + λ·L_sim(ref) over the first batch's true prompts. The first
    batch is read again with the loop's seed; L_sim is recomputed here in numpy from the base encoder."""
    from lgsid.encoder import load_encoder
    from lgsid.train.data import make_converter, petastorm_batches

    g, t = cfg.gdpo, cfg.train
    conv = make_converter(ex)
    try:
        with petastorm_batches(conv, g.batch_size, lambda rows: rows, seed=g.seed, num_epochs=1, shuffle_buffer=t.shuffle_buffer,
                               workers=t.num_workers, cur_shard=0, shard_count=1) as loader:
            first = next(rows for rows in loader if len(rows) >= 2)
    finally:
        conv.delete()
    e = load_encoder(cfg.encoder).encode([str(r["true_prompt"]) for r in first]).astype(np.float64)  # (B, D) E_ref
    B = len(e)
    d2 = ((e[:, None, :] - e[None, :, :]) ** 2).sum(-1)  # ‖E_ref(i) − E_ref(j)‖², diagonal 0
    l_sim_ref = float(np.mean(np.diag(d2) - (d2.sum(1) - np.diag(d2)) / (B - 1)))
    assert l_sim_ref < 0  # distinct items: only the "away from the others" term is left
    assert rec["l_align"] == pytest.approx(math.log(2), abs=1e-6)
    assert rec["reward_margin"] == pytest.approx(rec["ref_margin"], abs=1e-6)
    assert rec["l_sim"] == pytest.approx(l_sim_ref, abs=1e-4)
    assert rec["loss"] == pytest.approx(math.log(2) + g.lambda_sim * l_sim_ref, abs=1e-4)


def test_empty_pair_table_is_a_clear_error(spark, store, tiny_cfg):
    store.write(spark.createDataFrame(toy_prompts(20)), "geo_prompts")
    store.write(spark.createDataFrame([], "anchor_item_id string, other_item_id string, pair_type string, cooccur_users int, distance_km double"), "gdpo_pairs")
    from lgsid.gdpo import load_examples

    with pytest.raises(ValidationError, match="gdpo_pairs has 0 rows.*run `lgsid pairs` first"):
        load_examples(spark, tiny_cfg)


def test_embed_lists_reads_the_lists_back_through_petastorm(spark, tiny_cfg, toy_tables):
    """The reward's training tensor, read through Petastorm, holds exactly the encoder's vectors and the lists'
    soft labels at each (anchor, position), for the reward.max_anchors anchors only."""
    from lgsid.encoder import load_encoder
    from lgsid.reward import embed_lists, load_lists

    lists = load_lists(spark, tiny_cfg)
    batch = embed_lists(spark, lists, tiny_cfg)
    pdf = lists.toPandas().set_index("item_id")
    assert sorted(batch.item_ids) == sorted(pdf.index) and len(batch.item_ids) == tiny_cfg.reward.max_anchors
    enc = load_encoder(tiny_cfg.encoder)
    for i, item in enumerate(batch.item_ids[:3]):
        prompts, labels = pdf.loc[item, "prompts"], pdf.loc[item, "soft_labels"]
        np.testing.assert_allclose(batch.emb[i, : len(prompts)], enc.encode(list(prompts)), atol=1e-4)
        np.testing.assert_allclose(batch.labels[i, : len(prompts)], labels, rtol=1e-6)
        assert batch.mask[i].sum() == len(prompts)
