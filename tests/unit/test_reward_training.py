"""Reward training loop: early stopping on held-out lists, best-epoch weights, true-vs-near AUC."""

import numpy as np
import pytest
import torch

from lgsid.config import load_config, replace
from lgsid.reward import ListBatch, reward_loss, reward_metrics, train_reward_model


def test_reward_metrics_true_vs_near_uses_the_nearest_candidates():
    # One list, true score 2; nearest candidate 3 (above the true one), farthest 0 (below).
    labels = np.array([[1.0, 0.75, 0.5, 0.25]], dtype=np.float32)
    mask = np.ones_like(labels, dtype=bool)
    m = reward_metrics(np.array([[2.0, 3.0, 1.0, 0.0]]), labels, mask, n_far=1)
    assert m["auc_true_vs_near"] == pytest.approx(0.0) and m["auc_true_vs_far"] == pytest.approx(1.0)
    # n_far = 2: near = {3, 1} -> true (2) beats one of two: AUC 0.5; far = {1, 0}: AUC 1.
    m2 = reward_metrics(np.array([[2.0, 3.0, 1.0, 0.0]]), labels, mask, n_far=2)
    assert m2["auc_true_vs_near"] == pytest.approx(0.5) and m2["auc_true_vs_far"] == pytest.approx(1.0)


def _noise_lists(n: int, j: int, d: int, seed: int) -> ListBatch:
    """Lists whose embeddings are pure noise: nothing generalises, so the held-out loss must rise."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.linspace(1.0, 1.0 / j, j, dtype=np.float32), (n, 1))
    return ListBatch(np.arange(n), rng.normal(size=(n, j, d)).astype(np.float32), labels, np.ones((n, j), dtype=bool))


def test_early_stopping_keeps_the_best_held_out_epoch():
    cfg = replace(load_config(None), reward={"epochs": 60, "patience": 2, "lr": 1e-2, "hidden_sizes": [64], "batch_size": 8, "holdout_share": 0.3})
    data = _noise_lists(60, 5, 16, seed=0)
    seen: list[dict] = []
    model, m = train_reward_model(data, cfg, lambda rec, ep: seen.append(rec))
    assert m["epochs_run"] == len(seen) < 60  # stopped early: noise memorised, held-out loss rising
    vals = [r["reward_val_loss"] for r in seen]
    assert m["best_epoch"] == int(np.argmin(vals)) and m["epochs_run"] == m["best_epoch"] + 1 + 2
    assert m["reward_val_loss"] == pytest.approx(min(vals))
    # The returned weights are the best epoch's: recomputing the held-out loss gives the logged minimum.
    perm = np.random.default_rng(cfg.reward.seed).permutation(60)
    val = perm[: int(round(0.3 * 60))]
    with torch.no_grad():
        emb, lab, msk = (torch.from_numpy(a) for a in (data.emb[val], data.labels[val], data.mask[val].astype(np.float32)))
        again = float(reward_loss("listwise")(model(emb), lab, msk))
    assert again == pytest.approx(min(vals), rel=1e-5)


def test_patience_zero_runs_every_epoch():
    cfg = replace(load_config(None), reward={"epochs": 4, "patience": 0, "hidden_sizes": [8], "holdout_share": 0.3})
    _, m = train_reward_model(_noise_lists(20, 4, 8, seed=1), cfg)
    assert m["epochs_run"] == 4


def test_patience_must_be_non_negative():
    with pytest.raises(Exception, match="reward.patience"):
        replace(load_config(None), reward={"patience": -1})


def _anchored_lists(n: int, j: int, d: int, seed: int) -> ListBatch:
    """Lists whose candidates are the anchor blended with noise, less of the anchor the farther down the list.

    Entry 0 is the anchor itself (cosine 1); candidate r has cosine ~ 1 - r / j with it. The anchors
    are random, so a candidate's embedding alone says nothing about its rank: only a reward that
    sees the anchor can order the list.
    """
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 1, d))
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    noise = rng.normal(size=(n, j, d))
    noise -= (noise * a).sum(-1, keepdims=True) * a  # orthogonal to the anchor
    noise /= np.linalg.norm(noise, axis=-1, keepdims=True)
    c = (1.0 - np.arange(j) / j)[None, :, None]  # (1, J, 1) cosine with the anchor
    emb = (c * a + np.sqrt(1 - c**2) * noise).astype(np.float32)
    labels = np.tile(((j - np.arange(j)) / j).astype(np.float32), (n, 1))  # Eq. 3 with K = j - 1
    return ListBatch(np.arange(n), emb, labels, np.ones((n, j), dtype=bool))


def test_anchor_conditioning_orders_lists_that_eq2_cannot():
    data = _anchored_lists(160, 9, 16, seed=2)
    base = load_config(None)
    got = {}
    for cond in ("none", "anchor"):
        cfg = replace(base, reward={"epochs": 40, "patience": 3, "lr": 1e-2, "hidden_sizes": [32], "batch_size": 16, "conditioning": cond})
        model, m = train_reward_model(data, cfg)
        assert model.conditioning == cond
        got[cond] = m["val_auc_near_vs_far"]
    # 3 nearest vs 3 farthest candidates (cosine with the anchor .89-.67 vs .33-.11), 32 held-out lists
    assert got["anchor"] > 0.95 and got["none"] < 0.7, got


def test_conditioning_is_a_strict_config_choice():
    assert load_config(None).reward.conditioning == "none"
    with pytest.raises(Exception, match="reward.conditioning"):
        replace(load_config(None), reward={"conditioning": "content"})
