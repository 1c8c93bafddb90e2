"""Reward model equations (Eq. 2-4) on hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from lgsid.errors import ValidationError
from lgsid.reward import RewardMLP, listwise_bce, pointwise_bce, reward_loss, reward_metrics, soft_labels


def test_soft_labels_eq3_true_is_one_and_decays_with_rank():
    # K = 2: p = (K - rank + 1) / (K + 1) -> 3/3, 2/3, 1/3
    np.testing.assert_allclose(soft_labels(np.array([0, 1, 2]), 2), [1.0, 2 / 3, 1 / 3], rtol=1e-6)
    # K = 4, as the negatives step writes them: 1, .8, .6, .4, .2
    np.testing.assert_allclose(soft_labels(np.arange(5), 4), [1.0, 0.8, 0.6, 0.4, 0.2], rtol=1e-6)


def test_soft_labels_reject_ranks_outside_list():
    with pytest.raises(ValidationError, match=r"ranks must be in \[0, K=2\]"):
        soft_labels(np.array([0, 3]), 2)


def test_listwise_bce_hand_computed():
    # entry 1: x=0, p=.5 -> ln 2 = 0.693147; entry 2: x=ln 3 (sigma=.75), p=.75
    #   -> -(.75 ln .75 + .25 ln .25) = 0.562335; mean over the list = 0.627741
    logits = torch.tensor([[0.0, math.log(3.0)]])
    labels = torch.tensor([[0.5, 0.75]])
    assert float(listwise_bce(logits, labels)) == pytest.approx(0.627741, abs=1e-5)


def test_listwise_bce_averages_lists_and_ignores_padding():
    # list 1: [x=0,p=1] + padding -> ln 2; list 2: [x=0,p=1],[x=0,p=0] -> ln 2 each -> mean over lists ln 2
    logits = torch.tensor([[0.0, 50.0], [0.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert float(listwise_bce(logits, labels, mask)) == pytest.approx(math.log(2), abs=1e-6)
    # without the mask the padded logit 50 with label 0 costs ~50: the mask matters
    assert float(listwise_bce(logits, labels)) > 10


def test_eq4_as_printed_would_be_unbounded_but_ours_is_minimised_at_the_label():
    labels = torch.tensor([[1.0, 0.5]])
    at_label = listwise_bce(torch.tensor([[20.0, 0.0]]), labels)
    pushed = listwise_bce(torch.tensor([[20.0, 20.0]]), labels)  # Eq. 4's positive term alone would prefer this
    assert float(at_label) < float(pushed)


def test_pointwise_bce_true_vs_farthest():
    # true x=0 -> ln 2; farthest (last real) x=ln 3, label 0 -> -ln(1 - .75) = ln 4; mean = 1.039721
    logits = torch.tensor([[0.0, 9.0, math.log(3.0), 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert float(pointwise_bce(logits, torch.zeros_like(logits), mask)) == pytest.approx(1.039721, abs=1e-5)


def test_reward_loss_registry_lists_valid_names():
    assert reward_loss("listwise") is listwise_bce
    with pytest.raises(ValueError, match="valid: listwise, pointwise"):
        reward_loss("pairwise")


def test_reward_mlp_eq2_shapes():
    m = RewardMLP(8, [4, 3])
    assert m(torch.zeros(5, 7, 8)).shape == (5, 7)


def test_reward_mlp_eq2_hand_computed():
    # D = 2, one hidden layer of 2: h = ReLU(W1 x + b1), r = w2 . h + b2
    # W1 = [[1, -1], [2, 0]], b1 = [0, -1], w2 = [1, 3], b2 = .5
    # x = (1, 2): W1 x + b1 = (-1, 1) -> ReLU (0, 1) -> r = 0 + 3 + .5 = 3.5 (the ReLU zeroes unit 1)
    # x = (3, 1): W1 x + b1 = (2, 5) -> (2, 5) -> r = 2 + 15 + .5 = 17.5
    m = RewardMLP(2, [2])
    first, last = m.net[0], m.net[2]
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.0]]))
        first.bias.copy_(torch.tensor([0.0, -1.0]))
        last.weight.copy_(torch.tensor([[1.0, 3.0]]))
        last.bias.copy_(torch.tensor([0.5]))
    out = m(torch.tensor([[[1.0, 2.0], [3.0, 1.0]]]))  # one list of two prompt embeddings
    assert out.tolist() == [[3.5, 17.5]]


def test_reward_metrics_perfect_and_reversed():
    labels = np.array([[1.0, 0.75, 0.5, 0.25]] * 2, dtype=np.float32)
    mask = np.ones_like(labels, dtype=bool)
    good = reward_metrics(np.array([[4.0, 3, 2, 1], [9, 5, 1, 0]]), labels, mask, n_far=1)
    assert good["ndcg"] == pytest.approx(1.0) and good["auc_true_vs_far"] == pytest.approx(1.0)
    bad = reward_metrics(np.array([[1.0, 2, 3, 4], [0, 1, 5, 9]]), labels, mask, n_far=2)
    assert bad["auc_true_vs_far"] == pytest.approx(0.0) and bad["ndcg"] < 0.9


def test_random_lists_ablation_sorted_near_to_far_with_eq3_labels():
    import pandas as pd

    from lgsid.config import PromptsConfig
    from lgsid.reward import random_lists

    pts = [("a", 0.0, 0.0), ("b", 0.0, 1.0), ("c", 0.0, 3.0), ("d", 0.0, 2.0)]
    p = pd.DataFrame({
        "item_id": [i for i, _, _ in pts], "lat": [la for _, la, _ in pts], "lon": [lo for _, _, lo in pts],
        "content_text": [f"shop {i}" for i, _, _ in pts], "location_text": [f"in town {i}" for i, _, _ in pts],
        "prompt": [f"shop {i}; in town {i}" for i, _, _ in pts],
    })
    out = random_lists(p, k=3, seed=0, prompts_cfg=PromptsConfig()).set_index("item_id")
    a = out.loc["a"]  # K = N - 1: every other item, sorted by distance from lon 0: b (1), d (2), c (3)
    assert a["prompts"] == ["shop a; in town a", "shop a; in town b", "shop a; in town d", "shop a; in town c"]
    np.testing.assert_allclose(a["distance_km"], [0.0, 111.195, 222.39, 333.585], atol=0.01)
    np.testing.assert_allclose(a["soft_labels"], [1.0, 0.75, 0.5, 0.25])
    assert all(i not in [x.split()[-1] for x in row[1:]] for i, row in out["prompts"].items())  # never the anchor itself


def test_reward_metrics_near_vs_far_leaves_the_true_entry_out():
    # One list of 1 + 6 candidates, n_far = 2: nearest candidates (cols 1, 2) score 5, 1; farthest (cols 5, 6) 2, 0.
    # Pairs near > far: 5 > 2, 5 > 0, 1 > 0 -> 3 of 4: AUC 0.75 whatever the true entry scores.
    labels = np.linspace(1.0, 1 / 7, 7, dtype=np.float32)[None]
    mask = np.ones_like(labels, dtype=bool)
    for true_score in (-9.0, 9.0):
        m = reward_metrics(np.array([[true_score, 5, 1, 3, 3, 2, 0]]), labels, mask, n_far=2)
        assert m["auc_near_vs_far"] == pytest.approx(0.75)
    # A list of 1 + 3 candidates with n_far = 2: one candidate on each side, the middle one left out: 4 > 3 -> 1.
    m = reward_metrics(np.array([[0.0, 4, 9, 3]]), labels[:, :4], mask[:, :4], n_far=2)
    assert m["auc_near_vs_far"] == pytest.approx(1.0)


def test_save_load_keeps_conditioning_and_weights(tmp_path):
    from lgsid.errors import ModelError
    from lgsid.reward import load_reward_model, save_reward_model

    torch.manual_seed(0)
    m = RewardMLP(3, [4], conditioning="anchor")
    save_reward_model(m, str(tmp_path / "r"), {"mode": "listwise", "val_ndcg": 0.5, "conditioning": "ignored: the model's own wins"})
    back = load_reward_model(str(tmp_path / "r"))
    assert back.conditioning == "anchor" and back.meta["conditioning"] == "anchor" and back.meta["val_ndcg"] == 0.5
    e, a = torch.randn(5, 3), torch.randn(5, 3)
    assert torch.equal(back(e, a), m(e, a).detach()) and not any(p.requires_grad for p in back.parameters())
    # A file written before the option existed (no "conditioning") is Eq. 2.
    import json

    meta = json.loads((tmp_path / "r" / "reward_model.json").read_text())
    save_reward_model(RewardMLP(3, [4]), str(tmp_path / "old"))
    old = json.loads((tmp_path / "old" / "reward_model.json").read_text())
    del old["conditioning"]
    (tmp_path / "old" / "reward_model.json").write_text(json.dumps(old))
    assert load_reward_model(str(tmp_path / "old")).conditioning == "none"
    # Weights of an anchor model under a "none" description: a clear error naming both files.
    meta["conditioning"] = "none"
    (tmp_path / "r" / "reward_model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"reward_model.pt: weights do not fit .*conditioning none"):
        load_reward_model(str(tmp_path / "r"))
    meta["conditioning"] = "both"
    (tmp_path / "r" / "reward_model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="conditioning 'both' is not one of none, anchor"):
        load_reward_model(str(tmp_path / "r"))


def test_random_lists_distances_are_geo_haversine():
    import pandas as pd

    from lgsid.config import PromptsConfig
    from lgsid.geo import haversine_km
    from lgsid.reward import random_lists

    rng = np.random.default_rng(3)
    n = 6
    p = pd.DataFrame({"item_id": [f"i{i}" for i in range(n)], "lat": rng.uniform(30, 40, n), "lon": rng.uniform(-120, -110, n),
                      "content_text": "x", "location_text": [f"t{i}" for i in range(n)], "prompt": [f"x; t{i}" for i in range(n)]})
    out = random_lists(p, k=5, seed=1, prompts_cfg=PromptsConfig())
    for _, row in out.iterrows():
        i = int(row["item_id"][1:])
        cands = [int(t.split("t")[-1]) for t in row["prompts"][1:]]
        want = haversine_km(p.lat[i], p.lon[i], p.lat.to_numpy()[cands], p.lon.to_numpy()[cands])
        np.testing.assert_allclose(row["distance_km"][1:], want, rtol=1e-12)
        assert list(row["distance_km"][1:]) == sorted(row["distance_km"][1:])
