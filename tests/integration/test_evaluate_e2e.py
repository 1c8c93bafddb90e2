"""Tiny end-to-end ``lgsid evaluate`` over Delta tables written here: metrics.json has every section
present or explicitly skipped, the report and plots exist, and the run is logged to MLflow."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import yaml

from lgsid.embedding_f32 import encode_f32

pytestmark = pytest.mark.spark

N_ITEMS, N_USERS = 240, 60
SECTIONS = ("geo", "codebook", "generative", "discriminative")


def _frames(seed=0):
    """Items in 12 towns (4 states; county names repeat across states), users clicking near home,
    a reference embedding that ignores geography and an 'aligned' one that encodes the town."""
    rng = np.random.default_rng(seed)
    towns = [(f"S{t % 4}", f"County{t % 3}", f"Town{t}", 30 + 2 * t, -100 + 1.5 * t) for t in range(12)]
    town_of = np.arange(N_ITEMS) % 12
    items = pd.DataFrame({
        "item_id": [f"it{i:04d}" for i in range(N_ITEMS)],
        "name": [f"shop {i}" for i in range(N_ITEMS)],
        "brand": [f"brand{i % 7}" if i % 2 else None for i in range(N_ITEMS)],
        "category_l1": [f"cat{i % 5}" for i in range(N_ITEMS)],
        "category_l2": [f"sub{i % 9}" for i in range(N_ITEMS)],
        "price": rng.uniform(5, 50, N_ITEMS),
        "lat": [towns[t][3] + rng.normal(0, 0.02) for t in town_of],
        "lon": [towns[t][4] + rng.normal(0, 0.02) for t in town_of],
        "state": [towns[t][0] for t in town_of], "county": [towns[t][1] for t in town_of], "town": [towns[t][2] for t in town_of],
        "address": "", "source": "test",
    })
    rows = []
    for u in range(N_USERS):
        home = rng.integers(12)
        near = np.flatnonzero(town_of == home)
        for j in range(int(rng.integers(3, 9))):
            rows.append((f"u{u:03d}", items["item_id"][int(rng.choice(near))], pd.Timestamp("2024-01-01") + pd.Timedelta(minutes=int(rng.integers(10**5)))))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"]).drop_duplicates()
    ref = rng.normal(size=(N_ITEMS, 24)).astype(np.float32)
    aligned = np.concatenate([ref[:, :12], 3 * np.eye(12, dtype=np.float32)[town_of]], axis=1)
    emb = pd.concat([
        pd.DataFrame({"item_id": items["item_id"], "model_name": "test-encoder", "model_version": v, "embedding": list(e), "dim": e.shape[1],
                      "created_at": pd.Timestamp("2024-01-01"), "embedding_f32": encode_f32(e), "input_sha": "toy"})
        for v, e in (("reference", ref), ("aligned-1", aligned))
    ])
    return items, inter, emb


def _tiny(cfg):
    from lgsid.config import replace

    return replace(
        cfg,
        tokenizer={"codebook_sizes": [8, 4, 4], "epochs": 1, "batch_size": 128, "geo_coverage_sample": 0},
        evaluate={"seeds": [0], "ks": [5, 10], "tiger_epochs": 1, "din_epochs": 1, "tiger_d_model": 16, "tiger_heads": 2,
                  "beam_size": 10, "torch_threads": 1, "max_history": 4},
    )


def _write(spark, store, items, inter, emb=None):
    store.write(spark.createDataFrame(items), "items")
    store.write(spark.createDataFrame(inter), "interactions")
    if emb is not None:
        store.write(spark.createDataFrame(emb), "item_embeddings")


def _register_candidate(cfg, store, spark, items, tmp_path, codes, suffix):
    """A registered SID model version (HGIT on aligned-1) holding 'candidate', from a run with its
    tokenizer metrics, and its sid_items rows (the codes tokenize would have written)."""
    import mlflow

    from lgsid.tokenizer.job import sid_items_frame
    from lgsid.tracking import setup_mlflow

    exp = setup_mlflow(cfg)
    client = mlflow.MlflowClient()
    name = cfg.mlflow.sid_model_name
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_metrics({"usage_l1": 1.0, "collision_rate": 0.0, "geo_C_at_10": 1.0})
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=str(tmp_path / "no-model"), run_id=run.info.run_id,
                                     tags={"lgsid.tokenizer_kind": "hgit", "lgsid.embedding_model_version": "aligned-1"})
    client.set_registered_model_alias(name, "candidate", mv.version)
    store.write(sid_items_frame(spark, str(mv.version), items["item_id"], codes, suffix), "sid_items")
    return exp, client, name, mv


def test_evaluate_cli_end_to_end(spark, store, cfg, tmp_path, capsys):
    import mlflow

    from lgsid.cli import main
    from lgsid.config import replace
    from lgsid.errors import PromotionRefused
    from lgsid.registry import promote

    cfg = replace(_tiny(cfg), promote={"min_downstream_hit_at_10": 0.99})
    items, inter, emb = _frames()
    _write(spark, store, items, inter, emb)
    # the candidate's own codes: one level-1 code per town (what a refit of HGIT would not produce exactly)
    town = items["town"].str.removeprefix("Town").astype(int).to_numpy()
    codes = np.stack([town % 8, town // 8, np.arange(N_ITEMS) % 4], axis=1).astype(np.int64)
    from lgsid.tokenizer import dedup_suffix

    suffix = np.asarray(dedup_suffix(codes), dtype=np.int64)
    exp, client, name, mv = _register_candidate(cfg, store, spark, items, tmp_path, codes, suffix)
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump(cfg.to_dict()))
    out = tmp_path / "report-out"
    assert main(["evaluate", "--conf", str(conf), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "LGSID evaluation — headline" in printed and "report:" in printed

    m = json.loads((out / "metrics.json").read_text())
    for sec in SECTIONS:
        assert sec in m and ("skipped" not in m[sec]), (sec, m[sec])
    assert list(m["geo"]["rows"]) == ["reference", "aligned-1", "geo-oracle"]
    ref, al, oracle = (m["geo"]["rows"][k] for k in ("reference", "aligned-1", "geo-oracle"))
    assert al["T@5"] > ref["T@5"]  # the aligned space encodes the town
    assert ref["Similarity@5"] > al["Similarity@5"]  # retrieved in its own space, reference similarity is highest
    assert oracle["km_median@5"] < al["km_median@5"] < ref["km_median@5"]  # towns lie 100+ km apart, items ~2 km around them
    assert oracle["within_5km@5"] > 0.9 and ref["within_5km@5"] < 0.3
    # the candidate variant is scored from its sid_items, not refitted; the other three are refits
    assert m["meta"]["sid_sources"]["lgsid"] == f"registered {name} v{mv.version}"
    assert {m["meta"]["sid_sources"][v] for v in ("rqvae", "rqkmeans", "hgit-ref")} == {"refit"}
    assert m["codebook"]["lgsid"]["metrics"]["usage_l1"] == pytest.approx(8 / 8)  # codes 0..7 at level 1, as registered
    assert (out / "plots" / "map_lgsid.png").stat().st_size > 0
    gen = m["generative"]["variants"]
    sid_rows = {n for n, v in gen.items() if v["kind"] == "sid"}
    assert sid_rows == {"rqvae", "rqkmeans", "hgit-ref", "lgsid", "lgsid+repeat", "lgsid+reach", "lgsid+mix", "lgsid+mix+reach",
                        "lgsid+near", "lgsid+mix+near"}
    assert [n for n, v in gen.items() if v["kind"] == "baseline"] == ["popularity", "history", "history_nearby", "sasrec"]
    hist = gen["history"]["summary"]
    assert hist["revisit.Hit@10"]["mean"] == 1.0  # a revisit target is always among <= 8 own items
    share = m["generative"]["revisit_share"]
    assert hist["Hit@10"]["mean"] == pytest.approx(share * hist["revisit.Hit@10"]["mean"] + (1 - share) * hist["new.Hit@10"]["mean"])
    assert gen["lgsid+reach"]["summary"]["Reach@10"]["mean"] == 1.0  # constrained beams only reach nearby items
    for v in gen.values():
        assert v["summary"]["valid_share"]["mean"] == 1.0  # every list is full
    dis = m["discriminative"]["variants"]
    assert set(dis) == {"popularity", "history_nearby", "origin", "rqvae", "rqkmeans", "hgit-ref", "lgsid"}
    assert all("AUC_exposure" in v["summary"] for v in dis.values())
    assert m["meta"]["n_test_users"] == N_USERS
    report = (out / "report.md").read_text()
    assert "## Generative recommendation" in report and "User history + nearby popularity" in report and f"[v{mv.version}]" in report

    runs = mlflow.search_runs([exp], filter_string="tags.`lgsid.stage` = 'evaluate'")
    assert len(runs) == 1
    run_id = runs["run_id"][0]
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "report")}
    assert {"report/metrics.json", "report/report.md", "report/plots"} <= arts
    assert runs["metrics.generative.lgsid.Hit_at_10"][0] == pytest.approx(gen["lgsid"]["summary"]["Hit@10"]["mean"])
    tags = client.get_model_version(name, mv.version).tags
    assert float(tags["downstream.hit_at_10"]) == pytest.approx(gen["lgsid"]["summary"]["Hit@10"]["mean"], abs=1e-5)
    assert float(tags["downstream.auc"]) == pytest.approx(dis["lgsid"]["summary"]["AUC"]["mean"], abs=1e-5)
    assert tags["lgsid.evaluate_run_id"] == run_id and tags["downstream.variant"] == "lgsid"
    # the gate decides on the model it promotes: its own Hit@10 is far below 0.99 -> refused, naming the metric
    with pytest.raises(PromotionRefused, match=r"downstream.hit_at_10' = .* fails the gate promote.min_downstream_hit_at_10"):
        promote(cfg)


def test_evaluate_without_embeddings_skips_with_reasons(spark, store, cfg):
    from lgsid.config import replace
    from lgsid.steps.evaluate import run

    items, inter, _ = _frames(seed=1)
    _write(spark, store, items, inter)
    cfg = replace(_tiny(cfg), evaluate={"log_mlflow": False})
    summary = run(spark, cfg)
    m = json.loads(open(os.path.join(cfg.evaluate.out_dir, "metrics.json")).read())
    assert m["geo"] == {"skipped": "no item_embeddings (run `lgsid embed`)"}
    assert "skipped" in m["codebook"]
    assert {v["kind"] for v in m["generative"]["variants"].values()} == {"baseline"}  # baselines need no SIDs
    assert "no 'reference' item embeddings" in m["skipped"]["variant:rqvae"]
    assert list(m["discriminative"]["variants"]) == ["popularity", "history_nearby", "origin"]  # baselines and ID-only still run
    assert any(n.startswith("skipped geo:") for n in summary.notes)


def test_load_inputs_whole_tables_below_the_caps_and_a_hash_sample_above(spark, store, cfg):
    """Below evaluate.max_items / max_interactions the inputs are the whole tables (vectors streamed back
    exactly); above, the items with the smallest xxhash64(data_seed, item_id) (computed here in Spark
    independently), only their interactions, and whole users by hash, each named in the notes."""
    from pyspark.sql import functions as F

    from lgsid.config import replace
    from lgsid.evaluate.io import load_inputs

    items, inter, emb = _frames()
    _write(spark, store, items, inter, emb)
    notes: list[str] = []
    full = load_inputs(store, _tiny(cfg), notes)
    assert full.items["item_id"].tolist() == sorted(items["item_id"])
    assert len(full.interactions) == len(inter) and not any("evaluate.max_" in n for n in notes)
    for v in ("reference", "aligned-1"):
        want = np.stack(emb.loc[emb["model_version"] == v].set_index("item_id").loc[full.items["item_id"], "embedding"].to_numpy())
        np.testing.assert_array_equal(full.embeddings[v], want)

    cap = 100
    h = spark.createDataFrame(items[["item_id"]]).select("item_id", F.xxhash64(F.lit(0), "item_id").alias("h")).toPandas()
    smallest = sorted(h.sort_values(["h", "item_id"])["item_id"].head(cap))
    notes = []
    sub = load_inputs(store, replace(_tiny(cfg), evaluate={"max_items": cap}), notes)
    assert sub.items["item_id"].tolist() == smallest
    assert set(sub.interactions["item_id"]) <= set(smallest)
    assert len(sub.interactions) == int(inter["item_id"].isin(smallest).sum())
    np.testing.assert_array_equal(sub.embeddings["aligned-1"], full.embeddings["aligned-1"][full.items["item_id"].isin(smallest).to_numpy()])
    assert any(f"240 items > evaluate.max_items={cap}" in n for n in notes)

    notes = []
    few = load_inputs(store, replace(_tiny(cfg), evaluate={"max_interactions": 150}), notes)
    assert 0 < len(few.interactions) <= 150 < len(inter)
    for u, rows in few.interactions.groupby("user_id"):  # whole users: every interaction of a kept user
        assert len(rows) == int((inter["user_id"] == u).sum())
    assert any("evaluate.max_interactions=150" in n for n in notes)

    n_users = inter["user_id"].nunique()
    notes = []
    some = load_inputs(store, replace(_tiny(cfg), evaluate={"max_read_users": n_users // 3}), notes)
    kept = some.interactions["user_id"].unique()
    assert 0 < len(kept) <= n_users // 3
    uh = spark.createDataFrame(pd.DataFrame({"user_id": inter["user_id"].unique()})).select(
        "user_id", F.pmod(F.xxhash64(F.lit(0), "user_id"), F.lit(1 << 20)).alias("h")).toPandas()
    assert set(kept) == set(uh.sort_values("h")["user_id"].head(len(kept)))  # the users with the smallest hashes
    assert len(some.interactions) == int(inter["user_id"].isin(kept).sum())  # whole users
    assert any(f"{n_users:,} users > evaluate.max_read_users={n_users // 3:,}" in n for n in notes)
