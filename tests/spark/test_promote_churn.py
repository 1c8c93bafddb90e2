"""`lgsid promote` measures SID churn from sid_items, logs it in the candidate's run, refuses over promote.max_sid_churn, --force passes."""

from __future__ import annotations

import os

import pytest

from lgsid.errors import PromotionRefused

pytestmark = pytest.mark.spark
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def test_promote_step_gates_on_churn_measured_in_sid_items(spark, tmp_path):
    from mlflow import MlflowClient

    from lgsid.config import load_config, replace
    from lgsid.registry import promote, version_by_alias
    from lgsid.steps.promote import run
    from lgsid.storage import DeltaStore
    from lgsid.tokenizer.toy import toy_catalogue
    from lgsid.tracking import setup_mlflow
    from tests.integration.test_sid_model_registry import _log

    cfg = replace(
        load_config(None),
        storage={"root": str(tmp_path / "tables"), "staging_dir": str(tmp_path / "staging")},
        mlflow={"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "artifact_root": str(tmp_path / "mlartifacts")},
        tokenizer={"codebook_sizes": [6, 4, 4], "epochs": 1, "batch_size": 64},
        promote={"max_collision_rate": 0.9, "min_usage_l1": 0.5},
    )
    setup_mlflow(cfg)
    items, emb = toy_catalogue(120, 8, seed=4)
    _, _, v1 = _log(cfg, tmp_path, items, emb, "v1")
    assert promote(cfg, v1)[0] == v1  # champion
    _, _, v2 = _log(cfg, tmp_path, items, emb, "v2")  # candidate
    # hand-built sid_items: 4 common items; v2 changes item b at level 3, c at level 2, d at level 1 (+ one item only v2 has)
    schema = "sid_model_version STRING, sid STRING, item_id STRING, sid_l1 INT, sid_l2 INT, sid_l3 INT, sid_suffix INT"
    old = [(v1, "1-1-1-0", "a", 1, 1, 1, 0), (v1, "1-1-2-0", "b", 1, 1, 2, 0), (v1, "2-1-1-0", "c", 2, 1, 1, 0), (v1, "3-3-3-0", "d", 3, 3, 3, 0)]
    new = [(v2, "1-1-1-0", "a", 1, 1, 1, 0), (v2, "1-1-3-0", "b", 1, 1, 3, 0), (v2, "2-2-1-0", "c", 2, 2, 1, 0), (v2, "4-3-3-0", "d", 4, 3, 3, 0),
           (v2, "5-5-5-0", "e", 5, 5, 5, 0)]
    DeltaStore(spark, cfg.storage).write(spark.createDataFrame(old + new, schema), "sid_items")

    with pytest.raises(PromotionRefused, match=r"'sid_churn_full' = 0.75 fails the gate promote.max_sid_churn \(<= 0.2\).*"
                                               r"75.0% of 4 items changed their full SID \(L1-L2 50.0%, L1 25.0%\)"):
        run(spark, cfg)
    assert str(version_by_alias(cfg, "champion").version) == v1
    run_id = MlflowClient().get_model_version(cfg.mlflow.sid_model_name, v2).run_id
    logged = MlflowClient().get_run(run_id).data
    assert logged.metrics["sid_churn_full"] == 0.75 and logged.metrics["sid_churn_l1"] == 0.25
    assert logged.tags["lgsid.sid_churn_against"] == v1

    summary = run(spark, replace(cfg, promote={"force": True}))  # lgsid promote --force
    assert summary.metrics["champion_version"] == v2 and summary.metrics["sid_churn_l1_l2"] == 0.5
    assert f"sid churn against champion {v1}: 75.0% of 4 items changed their full SID (L1-L2 50.0%, L1 25.0%)" in summary.notes
    assert str(version_by_alias(cfg, "champion").version) == v2
