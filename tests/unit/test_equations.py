"""Paper equations (arXiv 2511.14221) not yet covered by a hand-computed test elsewhere.

Each test uses a few hand-built numbers; the expected values are worked out in the comments.
``docs/method.md`` ("Equations") maps every equation to its function and to the test that checks
it, here or in the module's own test file (Eq. 3-16 have hand-computed tests there already).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from torch import nn

from lgsid.config import GDPOConfig, NegativesConfig
from lgsid.gdpo.losses import gdpo_batch_loss
from lgsid.geo import EARTH_RADIUS_KM
from lgsid.negatives import TownIndex, negatives_table
from lgsid.reward import RewardMLP, anchor_features

torch.set_num_threads(1)

# One degree of longitude on the equator: R·π/180 = 6371.0088·0.01745329 = 111.19508 km.
DEG_KM = EARTH_RADIUS_KM * math.pi / 180.0


# ------------------------------------------------------------------ Eq. 1
def _five_towns() -> pd.DataFrame:
    """Five towns on the equator at lon 0, 1, 2, 4, 7; T0 and T3 share county C0, the rest have their own."""
    towns = [("T0", 0.0, "C0"), ("T1", 1.0, "C1"), ("T2", 2.0, "C2"), ("T3", 4.0, "C0"), ("T4", 7.0, "C4")]
    df = pd.DataFrame({
        "rep_id": [f"i{t}" for t, _, _ in towns], "rep_lat": 0.0, "rep_lon": [lon for _, lon, _ in towns],
        "state": "S", "county": [c for _, _, c in towns], "town": [t for t, _, _ in towns],
    })
    df["loc_key"] = df.state + "|" + df.county + "|" + df.town
    df["county_key"] = df.state + "|" + df.county
    df["location_text"] = "in " + df.town
    return df


def test_eq1_five_towns_near_set_far_set_and_ranking():
    # Anchor: item iT0 in town T0 (lon 0). K = 3, n_far = 1 -> need 2 near towns.
    # Own town T0 is never a candidate. Distances from lon 0 (equator, R = 6371.0088 km):
    #   T1 1° = 111.195 km, T2 2° = 222.390 km, T3 4° = 444.780 km, T4 7° = 778.366 km.
    # Near set = the 2 nearest other towns: T1, T2.
    # Far set = 1 town in another county, not in the near set: T3 shares county C0 with T0, so
    # the only eligible town is T4, whatever the hash draws.
    # Ranked 1..K by distance over near and far together: T1 (1, near), T2 (2, near), T4 (3, far).
    reps = _five_towns()
    cfg = NegativesConfig(k=3, n_far=1)
    index = TownIndex(reps)
    anchors = pa.table({"item_id": ["iT0"], "lat": [0.0], "lon": [0.0], "loc_key": ["S|C0|T0"],
                        "county_key": ["S|C0"], "a_hash": pa.array([12345], pa.int64())})
    out = negatives_table(index, anchors, cfg).to_pydict()
    assert out["rank"] == [1, 2, 3]
    assert out["cand_item_id"] == ["iT1", "iT2", "iT4"]
    assert out["cand_town"] == ["T1", "T2", "T4"]
    assert out["neg_kind"] == ["near", "near", "far"]
    np.testing.assert_allclose(out["distance_km"], [1 * DEG_KM, 2 * DEG_KM, 7 * DEG_KM], rtol=1e-12)
    assert [round(d, 3) for d in out["distance_km"]] == [111.195, 222.39, 778.366]


def test_eq1_min_near_distance_skips_close_towns():
    # Same five towns, anchor in T0, min_near_distance_km = 150: T1 (111 km) is skipped, so the
    # near set is T2 (222 km), T3 (445 km) -- T3 may be near although it shares T0's county -- and
    # the far set is the only other-county town left, T4.
    reps = _five_towns()
    cfg = NegativesConfig(k=3, n_far=1, min_near_distance_km=150.0)
    index = TownIndex(reps)
    anchors = pa.table({"item_id": ["iT0"], "lat": [0.0], "lon": [0.0], "loc_key": ["S|C0|T0"],
                        "county_key": ["S|C0"], "a_hash": pa.array([1], pa.int64())})
    out = negatives_table(index, anchors, cfg).to_pydict()
    assert out["cand_item_id"] == ["iT2", "iT3", "iT4"]
    assert out["neg_kind"] == ["near", "near", "far"]
    np.testing.assert_allclose(out["distance_km"], [2 * DEG_KM, 4 * DEG_KM, 7 * DEG_KM], rtol=1e-12)


# ------------------------------------------------------------------ Eq. 2
def test_eq2_reward_mlp_hand_computed():
    # r = W2·relu(W1·x + b1) + b2 with W1 = [[1, 0], [0, -1]], b1 = 0, W2 = [2, 3], b2 = 0.5.
    #   x = ( 1,  2): W1 x = ( 1, -2) -> relu ( 1, 0) -> 2·1 + 3·0 + .5 = 2.5
    #   x = (-1, -3): W1 x = (-1,  3) -> relu ( 0, 3) -> 2·0 + 3·3 + .5 = 9.5
    #   x = ( 0,  0): 0 -> relu 0 -> .5
    m = RewardMLP(2, [2])
    with torch.no_grad():
        m.net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        m.net[0].bias.zero_()
        m.net[2].weight.copy_(torch.tensor([[2.0, 3.0]]))
        m.net[2].bias.fill_(0.5)
    x = torch.tensor([[[1.0, 2.0], [-1.0, -3.0], [0.0, 0.0]]])  # (L=1, J=3, D=2)
    assert m(x).tolist() == [[2.5, 9.5, 0.5]]  # (L, J): one logit per prompt, exact in float32


def test_eq2_reward_mlp_without_hidden_layers_is_linear():
    # hidden_sizes [] -> r = w·x + b; w = (1, 2), b = -1: (3, 4) -> 3 + 8 - 1 = 10
    m = RewardMLP(2, [])
    with torch.no_grad():
        m.net[0].weight.copy_(torch.tensor([[1.0, 2.0]]))
        m.net[0].bias.fill_(-1.0)
    assert m(torch.tensor([3.0, 4.0])).item() == 10.0


def test_anchor_features_hand_computed():
    # x = [E_j, √D·(E_true ⊙ E_j)], D = 4 so √D = 2; the anchor broadcasts over a list:
    #   E_j = (2, -1, 0, 1), E_true = (3, 4, 5, .5) -> (2, -1, 0, 1, 2·6, 2·-4, 0, 2·.5) = (.., 12, -8, 0, 1)
    e = torch.tensor([[[2.0, -1.0, 0.0, 1.0], [0.5, 1.0, 1.0, 0.0]]])  # (L=1, J=2, D=4)
    a = torch.tensor([[[3.0, 4.0, 5.0, 0.5]]])  # (L=1, 1, D)
    assert anchor_features(e, a).tolist() == [[[2.0, -1.0, 0.0, 1.0, 12.0, -8.0, 0.0, 1.0], [0.5, 1.0, 1.0, 0.0, 3.0, 8.0, 10.0, 0.0]]]


def test_anchor_conditioned_reward_hand_computed():
    # Linear (hidden_sizes []), D = 4 (√D = 2), w = (1, 0, 0, 0, 1, 1, 1, 1), b = -1:
    #   r = e0 + 2·(a·e) - 1
    #   e = (1, 0, 0, 0), a = e:            1 + 2·1 - 1 = 2    (the true location itself)
    #   e = (0, 1, 0, 0), a = (1, 0, 0, 0): 0 + 2·0 - 1 = -1   (orthogonal: a far location)
    #   e = (0, 1, 0, 0), a = e:            0 + 2·1 - 1 = 1    (same e, other anchor: the score depends on it)
    m = RewardMLP(4, [], conditioning="anchor")
    assert m.net[0].in_features == 8
    with torch.no_grad():
        m.net[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]]))
        m.net[0].bias.fill_(-1.0)
    i = torch.eye(4)
    e = torch.stack([i[0], i[1], i[1]])
    a = torch.stack([i[0], i[0], i[1]])
    assert m(e, a).tolist() == [2.0, -1.0, 1.0]
    with pytest.raises(ValueError, match="anchor-conditioned"):
        m(e)
    with pytest.raises(ValueError, match="takes no anchor"):
        RewardMLP(4, [])(e, a)
    with pytest.raises(ValueError, match="valid: none, anchor"):
        RewardMLP(4, [], conditioning="both")


# ------------------------------------------------------------------ Eq. 6-8 on one batch
class _ToyEncoder(nn.Module):
    """E_θ(x) = x + A x (A starts at 0, like LoRA's B); ``reference()`` disables A, so E_ref(x) = x."""

    cpu_bf16 = False  # as :class:`lgsid.encoder.Encoder` with encoder.cpu_bf16=off: these hand computations are float32

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = nn.Parameter(a)
        self._ref = False

    @contextlib.contextmanager
    def reference(self):
        self._ref, old = True, self._ref
        try:
            yield
        finally:
            self._ref = old

    def forward(self, input_ids, attention_mask=None):
        x = input_ids.float()  # (rows, D): the toy "tokens" are the embedding itself
        return x if self._ref else x + x @ self.a.T


def _toy_batch():
    # B = 2; rows chosen [0:2], rejected [2:4], true [4:6]
    ids = torch.tensor([[1, 0], [0, 1], [0, 0], [1, 0], [1, 0], [0, 1]])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "n": 2}


def _linear_reward():
    r = RewardMLP(2, [])  # R(e) = 1·e0 + 2·e1
    with torch.no_grad():
        r.net[0].weight.copy_(torch.tensor([[1.0, 2.0]]))
        r.net[0].bias.zero_()
    return r


def test_eq6_8_batch_loss_at_step_zero_is_ln2_plus_lambda_lsim_ref():
    # A = 0: policy = reference, so every margin difference is 0 and L_align = -log σ(0) = ln 2.
    # L_sim(ref, ref) on the true rows e = [[1, 0], [0, 1]]: squared distances [[0, 2], [2, 0]],
    #   own 0, others' mean 2 -> L_sim = -2.  λ = 0.5: L = ln 2 - 1 = -0.306853.
    # Reward margins: R(chosen) = [1, 2], R(rejected) = [0, 1] -> margin [1, 1], mean 1 (both models).
    enc = _ToyEncoder(torch.zeros(2, 2))
    loss, parts = gdpo_batch_loss(enc, enc, _linear_reward(), _toy_batch(), GDPOConfig(beta=1.0, lambda_sim=0.5), "cpu")
    assert float(parts["l_align"]) == pytest.approx(math.log(2), abs=1e-7)
    assert float(parts["l_sim"]) == pytest.approx(-2.0, abs=1e-6)
    assert float(loss.detach()) == pytest.approx(math.log(2) - 1.0, abs=1e-6)
    assert float(parts["reward_margin"]) == pytest.approx(1.0) and float(parts["ref_margin"]) == pytest.approx(1.0)


def test_eq6_8_batch_loss_hand_computed_after_the_adapter_moves():
    # A = diag(0, 1): E_θ(x) = (x0, 2·x1), E_ref(x) = x, R(e) = e0 + 2·e1, β = 1, λ = 0.5.
    #   chosen   [1,0],[0,1] -> policy [1,0],[0,2] -> R_θ = [1, 4];  R_ref = [1, 2]
    #   rejected [0,0],[1,0] -> policy [0,0],[1,0] -> R_θ = [0, 1];  R_ref = [0, 1]
    #   margins: policy [1, 3], reference [1, 1] -> difference [0, 2]
    #   L_align = mean(log(1 + e^0), log(1 + e^-2)) = (0.693147 + 0.126928) / 2 = 0.410038
    # L_sim on the true rows: policy [[1,0],[0,2]] vs reference [[1,0],[0,1]]:
    #   ‖p0-r0‖² = 0, ‖p0-r1‖² = 2; ‖p1-r1‖² = 1, ‖p1-r0‖² = 5 -> mean(0 - 2, 1 - 5) = -3
    # L = 0.410038 + 0.5·(-3) = -1.089962; without L_sim (use_sim off) L = L_align.
    enc = _ToyEncoder(torch.diag(torch.tensor([0.0, 1.0])))
    g = GDPOConfig(beta=1.0, lambda_sim=0.5)
    loss, parts = gdpo_batch_loss(enc, enc, _linear_reward(), _toy_batch(), g, "cpu")
    l_align = (math.log(2) + math.log1p(math.exp(-2))) / 2
    assert float(parts["l_align"]) == pytest.approx(l_align, abs=1e-6)
    assert round(l_align, 6) == 0.410038
    assert float(parts["l_sim"]) == pytest.approx(-3.0, abs=1e-6)
    assert float(loss.detach()) == pytest.approx(l_align - 1.5, abs=1e-6)
    assert float(parts["reward_margin"]) == pytest.approx(2.0) and float(parts["ref_margin"]) == pytest.approx(1.0)
    g_off = GDPOConfig(beta=1.0, lambda_sim=0.5, use_sim=False)
    loss_off, parts_off = gdpo_batch_loss(enc, enc, _linear_reward(), _toy_batch(), g_off, "cpu")
    assert float(loss_off.detach()) == pytest.approx(l_align, abs=1e-6) and float(parts_off["l_sim"]) == 0.0


def _dot_reward():
    r = RewardMLP(2, [], conditioning="anchor")  # R(e | a) = √2·(a·e)·w = a0·e0 + a1·e1 (w = (0, 0, 1/√2, 1/√2), b = 0)
    with torch.no_grad():
        r.net[0].weight.copy_(torch.tensor([[0.0, 0.0, 2**-0.5, 2**-0.5]]))
        r.net[0].bias.zero_()
    return r


def test_eq6_8_anchor_conditioned_batch_loss_at_step_zero_is_ln2_plus_lambda_lsim_ref():
    # Condition a = E_ref(true) = [1,0],[0,1] (rows 4:6). R(e | a) = a·e.
    #   R(chosen)   = [1,0]·[1,0], [0,1]·[0,1] = [1, 1];  R(rejected) = [1,0]·[0,0], [0,1]·[1,0] = [0, 0]
    #   margins [1, 1] for policy and reference (A = 0) -> L_align = ln 2; L_sim = -2 as above.
    enc = _ToyEncoder(torch.zeros(2, 2))
    for use_sim, l_sim in ((True, -2.0), (False, 0.0)):
        loss, parts = gdpo_batch_loss(enc, enc, _dot_reward(), _toy_batch(), GDPOConfig(beta=1.0, lambda_sim=0.5, use_sim=use_sim), "cpu")
        assert float(parts["l_align"]) == pytest.approx(math.log(2), abs=1e-7)
        assert float(parts["l_sim"]) == pytest.approx(l_sim, abs=1e-6)
        assert float(loss.detach()) == pytest.approx(math.log(2) + 0.5 * l_sim, abs=1e-6)
        assert float(parts["reward_margin"]) == pytest.approx(1.0) and float(parts["ref_margin"]) == pytest.approx(1.0)


def test_eq6_8_anchor_conditioned_batch_loss_conditions_on_the_reference_true_prompt():
    # A = diag(0, 1): E_θ(x) = (x0, 2·x1), E_ref(x) = x; R(e | a) = a·e with a = E_ref(true) = [1,0],[0,1].
    #   chosen   policy [1,0],[0,2] -> R_θ = [1, 2];  reference [1,0],[0,1] -> R_ref = [1, 1]
    #   rejected policy [0,0],[1,0] -> R_θ = [0, 0];  reference [0,0],[1,0] -> R_ref = [0, 0]
    #   margins: policy [1, 2], reference [1, 1] -> difference [0, 1]
    #   L_align = mean(log 2, log(1 + e^-1)) = (0.693147 + 0.313262) / 2 = 0.503204
    # Conditioned on the *policy's* E_θ(true) = [1,0],[0,2] instead, R_θ(chosen) would be [1, 4]
    # (difference [0, 3], L_align 0.371539): the value below shows the condition is the reference.
    # L_sim = -3 as in the Eq. 2 case; λ = 0.5 -> L = 0.503204 - 1.5.
    enc = _ToyEncoder(torch.diag(torch.tensor([0.0, 1.0])))
    loss, parts = gdpo_batch_loss(enc, enc, _dot_reward(), _toy_batch(), GDPOConfig(beta=1.0, lambda_sim=0.5), "cpu")
    l_align = (math.log(2) + math.log1p(math.exp(-1))) / 2
    assert round(l_align, 6) == 0.503204
    assert float(parts["l_align"]) == pytest.approx(l_align, abs=1e-6)
    assert float(loss.detach()) == pytest.approx(l_align - 1.5, abs=1e-6)
    assert float(parts["reward_margin"]) == pytest.approx(1.5) and float(parts["ref_margin"]) == pytest.approx(1.0)
    # The gradient reaches the adapter only through the chosen / rejected rows (and L_sim), not the condition:
    # d L_align / d A11 = -mean over examples of σ(-Δ)·dΔ/dA11; only example 2's chosen row [0,1] depends on A11,
    #   with R_θ = a·(e + A e) = 1 + A11 -> dΔ/dA11 = 1, σ(-1) = 0.268941 -> grad = -0.268941 / 2 = -0.134471.
    enc.a.grad = None
    l, _ = gdpo_batch_loss(enc, enc, _dot_reward(), _toy_batch(), GDPOConfig(beta=1.0, lambda_sim=0.5, use_sim=False), "cpu")
    l.backward()
    assert float(enc.a.grad[1, 1]) == pytest.approx(-1 / (1 + math.e) / 2, abs=1e-6)
