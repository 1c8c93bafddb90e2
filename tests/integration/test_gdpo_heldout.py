"""gdpo step with held-out geo evaluation: examples lose the held-out anchors, the curve and the JSON reach MLflow."""

from __future__ import annotations

import json

import pytest

from lgsid.config import replace

from test_alignment_e2e import write_toy_tables

pytestmark = pytest.mark.spark


def test_gdpo_logs_heldout_geo_curve(spark, store, cfg):
    import mlflow

    from lgsid import gdpo, reward

    write_toy_tables(spark, store)
    c = replace(
        cfg,
        encoder={"max_length": 32, "batch_size": 32},
        reward={"epochs": 2, "max_anchors": 40, "hidden_sizes": [16]},
        negatives={"k": 4, "n_far": 1},
        gdpo={"max_steps": 2, "batch_size": 4, "eval_every": 1, "eval_items": 30, "eval_patience": 0},
        train={"checkpoint_every": 1, "shuffle_buffer": 16},
    )
    reward.run(spark, c)
    gs = gdpo.run(spark, c)
    assert gs.metrics["steps"] == 2
    client = mlflow.MlflowClient()
    run_id = mlflow.search_runs(filter_string="tags.`lgsid.stage` = 'gdpo'", output_format="list")[0].info.run_id
    run = client.get_run(run_id)
    from lgsid.gdpo.examples import load_examples

    _, n_all, _ = load_examples(spark, c)
    assert 0 < int(run.data.params["gdpo.n_examples"]) < n_all  # the held-out items' examples are left out
    hist = client.get_metric_history(run_id, "heldout.within_1km")
    assert sorted(m.step for m in hist) == [0, 1, 2]
    assert {"heldout_oracle.within_1km", "heldout.best_step"} <= set(run.data.metrics)
    plots = {a.path.split("/")[-1] for a in client.list_artifacts(run_id, "plots")}
    assert "heldout_geo.png" in plots
    d = json.load(open(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/train/heldout_geo.json")))
    assert [e["step"] for e in d["evals"]] == [0, 1, 2] and 0.0 <= d["oracle"]["within_1km"] <= 1.0
