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
                      "created_at": pd.Timestamp("2024-01-01"), "embedding_f32": encode_f32(e)})
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


def test_evaluate_cli_end_to_end(spark, store, cfg, tmp_path, capsys):
    import mlflow

    from lgsid.cli import main

    cfg = _tiny(cfg)
    _write(spark, store, *_frames())
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump(cfg.to_dict()))
    # a registered candidate SID model version (HGIT on aligned-1): evaluate tags it for the promotion gate
    from lgsid.tracking import setup_mlflow

    exp = setup_mlflow(cfg)
    client = mlflow.MlflowClient()
    name = cfg.mlflow.sid_model_name
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=str(tmp_path / "no-model"), tags={"lgsid.tokenizer_kind": "hgit", "lgsid.embedding_model_version": "aligned-1"})
    client.set_registered_model_alias(name, "candidate", mv.version)
    out = tmp_path / "report-out"
    assert main(["evaluate", "--conf", str(conf), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "LGSID evaluation — headline" in printed and "report:" in printed

    m = json.loads((out / "metrics.json").read_text())
    for sec in SECTIONS:
        assert sec in m and ("skipped" not in m[sec]), (sec, m[sec])
    assert list(m["geo"]["rows"]) == ["reference", "aligned-1"]
    ref, al = m["geo"]["rows"]["reference"], m["geo"]["rows"]["aligned-1"]
    assert al["T@5"] > ref["T@5"]  # the aligned space encodes the town
    assert ref["Similarity@5"] > al["Similarity@5"]  # retrieved in its own space, reference similarity is highest
    assert set(m["codebook"]) == {"rqvae", "rqkmeans", "hgit-ref", "lgsid"}
    assert 0 <= m["codebook"]["lgsid"]["metrics"]["collision_rate"] <= 1
    gen = m["generative"]["variants"]
    assert set(gen) == {"rqvae", "rqkmeans", "hgit-ref", "lgsid"}
    for v in gen.values():
        assert v["summary"]["valid_share"]["mean"] == 1.0  # every beam maps to an item
        assert 0 <= v["summary"]["Hit@10"]["mean"] <= 1 and 0 <= v["summary"]["Reach@10"]["mean"] <= 1
    assert set(m["discriminative"]["variants"]) == {"origin", "rqvae", "rqkmeans", "hgit-ref", "lgsid"}
    assert m["meta"]["n_test_users"] == N_USERS
    report = (out / "report.md").read_text()
    assert "## Generative recommendation" in report and "LGSID (HGIT + aligned emb.)" in report
    assert (out / "plots" / "projection_aligned-1.png").stat().st_size > 0

    runs = mlflow.search_runs([exp], filter_string="tags.`lgsid.stage` = 'evaluate'")
    assert len(runs) == 1
    run_id = runs["run_id"][0]
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "report")}
    assert {"report/metrics.json", "report/report.md", "report/plots"} <= arts
    assert runs["metrics.generative.lgsid.Hit_at_10"][0] == pytest.approx(gen["lgsid"]["summary"]["Hit@10"]["mean"])
    tags = client.get_model_version(name, mv.version).tags
    assert float(tags["downstream.hit_at_10"]) == pytest.approx(gen["lgsid"]["summary"]["Hit@10"]["mean"], abs=1e-5)
    assert float(tags["downstream.auc"]) == pytest.approx(m["discriminative"]["variants"]["lgsid"]["summary"]["AUC"]["mean"], abs=1e-5)
    assert tags["lgsid.evaluate_run_id"] == run_id


def test_evaluate_without_embeddings_skips_with_reasons(spark, store, cfg):
    from lgsid.config import replace
    from lgsid.evaluate import run

    items, inter, _ = _frames(seed=1)
    _write(spark, store, items, inter)
    cfg = replace(_tiny(cfg), evaluate={"log_mlflow": False})
    summary = run(spark, cfg)
    m = json.loads(open(os.path.join(cfg.evaluate.out_dir, "metrics.json")).read())
    assert m["geo"] == {"skipped": "no item_embeddings (run `lgsid embed`)"}
    assert "skipped" in m["codebook"] and "skipped" in m["generative"]
    assert "no 'reference' item embeddings" in m["skipped"]["variant:rqvae"]
    assert list(m["discriminative"]["variants"]) == ["origin"]  # ID-only still runs
    assert any(n.startswith("skipped geo:") for n in summary.notes)
