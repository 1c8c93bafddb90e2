"""gdpo step with held-out geo evaluation and an anchor-conditioned reward: examples lose the held-out anchors, the curve
and the JSON reach MLflow, and the reward model (with its conditioning) travels reward -> MLflow -> gdpo."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lgsid.config import replace

from test_alignment_e2e import write_toy_tables

pytestmark = pytest.mark.spark


def test_gdpo_logs_heldout_geo_curve(spark, store, cfg):
    import mlflow

    from lgsid import reward
    from lgsid.steps import gdpo as gdpo_step, reward as reward_step

    write_toy_tables(spark, store)
    c = replace(
        cfg,
        encoder={"max_length": 32, "batch_size": 32},
        reward={"epochs": 2, "max_anchors": 40, "hidden_sizes": [16], "conditioning": "anchor"},
        negatives={"k": 4, "n_far": 1},
        gdpo={"max_steps": 2, "batch_size": 4, "eval_every": 1, "eval_items": 30, "eval_patience": 0},
        train={"checkpoint_every": 1, "shuffle_buffer": 16},
    )
    rs = reward_step.run(spark, c)
    assert 0.0 <= rs.metrics["val_auc_near_vs_far"] <= 1.0
    gs = gdpo_step.run(spark, c)
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

    # The reward model reached gdpo through MLflow with its conditioning and weights.
    reward_run_id = run.data.params["gdpo.reward_run_id"]
    assert run.data.params["gdpo.reward_conditioning"] == "anchor"
    logged = reward.load_logged_reward_model(reward_run_id)
    assert logged.conditioning == "anchor" and logged.meta["mlflow_run_id"] == reward_run_id
    again = reward.load_logged_reward_model(run_id)  # the copy gdpo logged in its own run
    assert again.conditioning == "anchor"
    assert all(torch.equal(a, b) for a, b in zip(logged.state_dict().values(), again.state_dict().values()))
    # Step 0 (LoRA B = 0: policy = reference): conditioned on E_ref(true) the margins agree, L_align = ln 2.
    first = min(client.get_metric_history(run_id, "l_align"), key=lambda m: m.step)
    assert first.step == 1 and first.value == pytest.approx(math.log(2), abs=1e-5)
