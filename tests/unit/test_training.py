"""train_minibatches: the validation record and early stopping on a hand-computed trajectory."""

import numpy as np
import pytest
import torch
from torch import nn

from lgsid.evaluate.training import train_minibatches


def _run(patience):
    w = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(w.weight)
    opt = torch.optim.SGD(w.parameters(), lr=0.3)
    # the loss -w has gradient -1: one step per epoch moves w by +0.3 -> 0.3, 0.6, 0.9, 1.2, 1.5, 1.8
    m = train_minibatches(w, opt, 1, lambda bi: -w.weight.sum(), epochs=6, batch_size=1, rng=np.random.default_rng(0),
                          valid_loss=lambda: float((w.weight.sum() - 1.0) ** 2), patience=patience)
    return m, float(w.weight.detach().sum())


def test_validation_loss_is_recorded_every_epoch():
    m, w = _run(patience=0)
    np.testing.assert_allclose(m.fit_history["valid_loss"], [0.49, 0.16, 0.01, 0.04, 0.25, 0.64], atol=1e-6)
    assert m.fit_history["best_epoch"] == 3 and m.fit_history["epochs_run"] == 6
    assert w == pytest.approx(1.8)  # no early stopping: every epoch ran, last weights kept


def test_early_stopping_restores_the_best_epoch():
    m, w = _run(patience=2)
    assert m.fit_history["epochs_run"] == 5  # epochs 4 and 5 did not improve on epoch 3
    assert m.fit_history["best_epoch"] == 3
    assert w == pytest.approx(0.9)  # epoch 3's weights
