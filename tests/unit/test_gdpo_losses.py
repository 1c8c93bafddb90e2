"""G-DPO equations (Eq. 6-8) on hand-computed cases."""

import math

import pytest
import torch

from lgsid.gdpo import gdpo_align_loss, gdpo_objective, similarity_loss


def test_align_loss_eq6_hand_computed():
    # margin = (2 - 1) - (1 - 1) = 1; beta = .5 -> -log sigma(.5) = log(1 + e^-.5) = 0.474077
    t = torch.tensor
    assert float(gdpo_align_loss(t([2.0]), t([1.0]), t([1.0]), t([1.0]), 0.5)) == pytest.approx(0.474077, abs=1e-6)


def test_align_loss_is_ln2_when_policy_equals_reference_and_means_over_batch():
    r = torch.tensor([0.3, -1.0])
    assert float(gdpo_align_loss(r, r.flip(0), r, r.flip(0), 0.9)) == pytest.approx(math.log(2), abs=1e-6)
    # batch of margins [+1, -1], beta 1: mean(log(1+e^-1), log(1+e^1)) = (0.313262 + 1.313262) / 2
    got = gdpo_align_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.zeros(2), torch.zeros(2), 1.0)
    assert float(got) == pytest.approx(0.813262, abs=1e-6)


def test_similarity_loss_eq7_hand_computed():
    # D = 1: pol = [0, 1, 3], ref = [0, 0, 1]
    # squared distances row i = pol_i vs ref_j: [0,0,1], [1,1,0], [9,9,4]
    # own: [0, 1, 4]; others' mean: [.5, .5, 9]; mean(own - others) = (-.5 + .5 - 5) / 3 = -5/3
    pol = torch.tensor([[0.0], [1.0], [3.0]])
    ref = torch.tensor([[0.0], [0.0], [1.0]])
    assert float(similarity_loss(pol, ref)) == pytest.approx(-5 / 3, abs=1e-5)


def test_similarity_loss_orthonormal_identity_is_minus_two():
    e = torch.eye(2)
    assert float(similarity_loss(e, e)) == pytest.approx(-2.0, abs=1e-5)


def test_similarity_loss_needs_two_items():
    with pytest.raises(ValueError, match="at least 2 items"):
        similarity_loss(torch.zeros(1, 3), torch.zeros(1, 3))


def test_objective_eq8_and_ablation_switch():
    assert float(gdpo_objective(torch.tensor(1.0), torch.tensor(2.0), 0.5)) == pytest.approx(2.0)
    assert float(gdpo_objective(torch.tensor(1.0), torch.tensor(2.0), 0.5, use_sim=False)) == pytest.approx(1.0)


def test_align_loss_gradient_widens_the_policy_margin():
    pos = torch.tensor([0.0], requires_grad=True)
    neg = torch.tensor([0.0], requires_grad=True)
    gdpo_align_loss(pos, neg, torch.zeros(1), torch.zeros(1), 0.9).backward()
    assert pos.grad.item() < 0 < neg.grad.item()  # descent raises R(+) and lowers R(-)
